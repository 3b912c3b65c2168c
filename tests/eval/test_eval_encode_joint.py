"""Both streams through the transformer as one batch (the CPU default) give the scores of two
separate ``extract_finetune`` passes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sf_fairseq.checkpoint import load_encoder
from sf_fairseq.eval import encode
from sf_fairseq.eval.pipeline import Scorer, load_scorer

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tiny(shared_dir):
    model, _ = load_encoder(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt")
    return model.eval()


def clips(seed: int, lengths: list[tuple[int, int]]) -> list[encode.ClipInputs]:
    rng = np.random.default_rng(seed)
    return [
        encode.ClipInputs(rng.normal(size=(t, 88, 88)).astype(np.float32), rng.normal(size=(u, 104)).astype(np.float32))
        for t, u in lengths
    ]


@pytest.mark.parametrize("layer", [None, 1])
def test_joint_features_equal_two_extract_finetune_calls(tiny, layer) -> None:
    batch = clips(0, [(40, 42), (25, 25), (33, 30)])
    separate = encode.StreamEncoder(copy.deepcopy(tiny), output_layer=layer, joint_streams=False)
    joint = encode.StreamEncoder(copy.deepcopy(tiny), output_layer=layer, joint_streams=True)
    v0, vlen0, a0, alen0 = separate.encode(batch)
    v1, vlen1, a1, alen1 = joint.encode(batch)
    assert v1.shape == v0.shape == (3, 40, v0.shape[2]) and a1.shape == a0.shape == (3, 42, a0.shape[2])
    assert vlen1.tolist() == vlen0.tolist() and alen1.tolist() == alen0.tolist()
    for row in range(len(batch)):
        torch.testing.assert_close(v1[row, : vlen0[row]], v0[row, : vlen0[row]], rtol=0, atol=TOLERANCE)
        torch.testing.assert_close(a1[row, : alen0[row]], a0[row, : alen0[row]], rtol=0, atol=TOLERANCE)


def test_joint_scores_equal_separate_passes(tiny) -> None:
    batch = clips(1, [(50, 50), (30, 32), (61, 60)])
    separate = Scorer(encode.StreamEncoder(copy.deepcopy(tiny), joint_streams=False)).score_clips(batch)
    joint = Scorer(encode.StreamEncoder(copy.deepcopy(tiny), joint_streams=True)).score_clips(batch)
    for a, b in zip(separate, joint):
        assert b.score == pytest.approx(a.score, abs=TOLERANCE)
        assert b.curve == pytest.approx(a.curve, abs=TOLERANCE)
        assert (b.best_offset, b.n_frames) == (a.best_offset, a.n_frames)


def test_joint_streams_is_the_cpu_default_for_av_hubert(shared_dir, stand_in) -> None:
    assert load_scorer(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt").encoder.joint_streams
    assert not encode.StreamEncoder(stand_in).joint_streams  # a model without the method
    with pytest.raises(ValueError, match="extract_finetune_streams"):
        encode.StreamEncoder(stand_in, joint_streams=True)
