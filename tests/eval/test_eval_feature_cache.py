"""A stream that recurs (a real clip's video in its dubbed copy, its speech under a redrawn
mouth) is encoded once, and the reused features are those a fresh encoding gives."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sf_fairseq.checkpoint import load_encoder
from sf_fairseq.eval import encode
from sf_fairseq.eval.feature_cache import FeatureCache, content_key
from sf_fairseq.eval.pipeline import Scorer

TOLERANCE = 1e-5


def arrays(seed: int, n: int, shape: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(np.float32) for _ in range(n)]


def test_content_key_tells_streams_shapes_and_values_apart() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert content_key("video", x) == content_key("video", x.copy())
    assert content_key("video", x) != content_key("audio", x)
    assert content_key("video", x) != content_key("video", x.reshape(4, 3))
    assert content_key("video", x) != content_key("video", x.astype(np.float64))
    y = x.copy()
    y[2, 3] += 1e-6
    assert content_key("video", x) != content_key("video", y)
    assert content_key("video", x.T) == content_key("video", np.ascontiguousarray(x.T))


def test_cache_keeps_the_most_recently_used_within_its_bytes() -> None:
    cache = FeatureCache(max_bytes=3 * 40)  # three [10, 1] float32 entries
    feats = {k: torch.full((10, 1), float(i)) for i, k in enumerate([b"a", b"b", b"c", b"d"])}
    for key in (b"a", b"b", b"c"):
        cache.put(key, feats[key])
    assert cache.get(b"a") is feats[b"a"]  # now the most recent: "b" is the oldest
    cache.put(b"d", feats[b"d"])
    assert cache.get(b"b") is None and len(cache) == 3 and cache.nbytes == 120
    assert [cache.get(k) is not None for k in (b"a", b"c", b"d")] == [True, True, True]
    assert (cache.hits, cache.misses) == (4, 1)
    cache.put(b"big", torch.zeros(100, 1))  # larger than the whole cache: not kept, nothing evicted
    assert cache.get(b"big") is None and len(cache) == 3
    off = FeatureCache(0)
    off.put(b"a", feats[b"a"])
    assert off.get(b"a") is None and len(off) == 0
    with pytest.raises(ValueError):
        FeatureCache(-1)


def test_cache_sizes_numpy_arrays_like_tensors() -> None:
    """The voice-activity probabilities (numpy) share the class with the features (torch)."""
    cache = FeatureCache(max_bytes=2 * 80)  # two [10] float64 arrays
    arrays = [np.full(10, float(i)) for i in range(3)]
    for i, array in enumerate(arrays):
        cache.put(bytes([i]), array)
    assert len(cache) == 2 and cache.nbytes == 160 and cache.get(bytes([0])) is None
    assert cache.get(bytes([2])) is arrays[2]
    cache.put(bytes([1]), torch.zeros(20))  # replacing an entry counts its new size only
    assert cache.nbytes == 160 and len(cache) == 2


def rows_in_calls(model, stream: str) -> list[int]:
    return [call["mask"].shape[0] for call in model.calls if call["stream"] == stream]


def test_shared_streams_are_encoded_once_and_equal_fresh_encodings(stand_in) -> None:
    video_a, video_b = arrays(0, 2, (20, 88, 88))
    audio_a, audio_b, audio_c = arrays(1, 3, (21, 104))
    # real, dubbed (real video, other speech), redrawn mouth (other video, real speech), copy of real
    batch = [encode.ClipInputs(video_a, audio_a), encode.ClipInputs(video_a.copy(), audio_b),
             encode.ClipInputs(video_b, audio_a.copy()), encode.ClipInputs(video_a, audio_c)]
    encoder = encode.StreamEncoder(stand_in)
    v, vlen, a, alen = encoder.encode(batch)
    assert rows_in_calls(stand_in, "video") == [2] and rows_in_calls(stand_in, "audio") == [3]
    assert vlen.tolist() == [20] * 4 and alen.tolist() == [21] * 4
    for row, clip in enumerate(batch):
        fresh = encode.StreamEncoder(copy.deepcopy(stand_in), cache_bytes=0).encode([clip])
        torch.testing.assert_close(v[row], fresh[0][0])
        torch.testing.assert_close(a[row], fresh[2][0])
    # A later batch reuses what the cache holds: only the new speech is encoded.
    stand_in.calls.clear()
    v2, _, a2, _ = encoder.encode([encode.ClipInputs(video_b, arrays(2, 1, (18, 104))[0])])
    assert rows_in_calls(stand_in, "video") == [] and rows_in_calls(stand_in, "audio") == [1]
    torch.testing.assert_close(v2[0], v[2])
    assert encoder.cache.hits >= 1


def test_padding_rows_are_zero_and_lengths_are_each_clips(stand_in) -> None:
    short, long = arrays(3, 1, (7, 88, 88))[0], arrays(4, 1, (12, 88, 88))[0]
    audio_short, audio_long = arrays(5, 1, (8, 104))[0], arrays(6, 1, (13, 104))[0]
    batch = [encode.ClipInputs(short, audio_long), encode.ClipInputs(long, audio_short),
             encode.ClipInputs(short, audio_short)]
    v, vlen, a, alen = encode.StreamEncoder(stand_in).encode(batch)
    assert v.shape[:2] == (3, 12) and a.shape[:2] == (3, 13)
    assert vlen.tolist() == [7, 12, 7] and alen.tolist() == [13, 8, 8]
    assert torch.count_nonzero(v[0, 7:]) == 0 and torch.count_nonzero(a[1, 8:]) == 0
    torch.testing.assert_close(v[0], v[2])


@pytest.fixture(scope="module")
def tiny(shared_dir):
    model, _ = load_encoder(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt")
    return model.eval()


@pytest.mark.parametrize("joint", [True, False])
def test_reference_model_scores_with_shared_streams_equal_scores_alone(tiny, joint) -> None:
    """The fixture model (a real AV-HuBERT): with two clips sharing the video and two sharing
    the speech, the joint pass runs 2 video rows and 3 speech rows; every clip scores as alone."""
    video_a, video_b = arrays(7, 2, (30, 88, 88))
    audio_a, audio_b, audio_c = arrays(8, 3, (31, 104))
    batch = [encode.ClipInputs(video_a, audio_a), encode.ClipInputs(video_a, audio_b),
             encode.ClipInputs(video_b, audio_a), encode.ClipInputs(video_b, audio_c)]
    encoder = encode.StreamEncoder(copy.deepcopy(tiny), joint_streams=joint)
    shared = Scorer(encoder).score_clips(batch)
    assert len(encoder.cache) == 5
    for clip, result in zip(batch, shared):
        fresh = encode.StreamEncoder(copy.deepcopy(tiny), joint_streams=joint, cache_bytes=0)
        alone = Scorer(fresh).score_clips([clip])[0]
        assert result.score == pytest.approx(alone.score, abs=TOLERANCE)
        assert result.curve == pytest.approx(alone.curve, abs=TOLERANCE)
        assert result.best_offset == alone.best_offset
