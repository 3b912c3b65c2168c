"""``AVAlignmentCriterion.forward`` against a direct computation.

A stub model stands in for AV-HuBERT: its masked-prediction output is fixed, and its
``extract_finetune`` encodes each excerpt frame as that instant's feature vector (carried in
the input) plus a code of the frame's *position in the excerpt*. The position code is what
makes the shift visible in the loss: the video and audio encodings of one instant carry the
position codes of rows d apart. The expected loss is computed here from the full clips, the
drawn shift and the position codes, without the criterion's excerpt helpers.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from fairseq import metrics

from sf_fairseq.criteria.av_alignment_criterion import AVAlignmentCriterion

# The tests seed torch's global RNG (model initialisation and the criteria draw from it).
pytestmark = pytest.mark.usefixtures("restore_torch_rng")

FRAMES, DIM, SIDE = 10, 4, 2  # video frames carry DIM = SIDE * SIDE values per frame
LENGTHS = (10, 7, 9)  # valid frames per clip (padding after)
TAU = 0.5


class StubModel(torch.nn.Module):
    """A fixed masked-prediction output, and per-frame encodings ``content + position code``.

    Video input [B, 1, T, SIDE, SIDE] and audio input [B, DIM, T] hold each instant's content
    vector; the lip front end's output is the video's content vectors [B, DIM, T]; row r of
    either encoding is the content vector plus ``positions[r]``. Records what ``forward`` and
    ``extract_finetune`` were given and how often the lip front end ran. With
    ``substitutes_video_features`` it stands for a model that masks the front end's output.
    """

    def __init__(self, net_output: dict[str, Any], positions: torch.Tensor,
                 substitutes_video_features: bool = False) -> None:
        super().__init__()
        self.net_output = net_output
        self.positions = positions
        self.substitutes_video_features = substitutes_video_features
        self.encoded: list[dict[str, Any]] = []
        self.forward_kwargs: dict[str, Any] = {}
        self.front_end_runs = 0

    def forward(self, **kwargs: Any) -> dict[str, Any]:
        self.forward_kwargs = kwargs
        return self.net_output

    def forward_features(self, source: torch.Tensor, modality: str) -> torch.Tensor:
        assert modality == "video"
        self.front_end_runs += 1
        return source[:, 0].flatten(2).transpose(1, 2)  # [B, DIM, T]

    def get_extra_losses(self, net_output: dict[str, Any]) -> tuple[list[torch.Tensor], list[str]]:
        return [net_output["features_pen"]], ["features_pen"]

    def extract_finetune(self, source: dict[str, torch.Tensor | None], padding_mask: torch.Tensor | None,
                         output_layer: int | None = None,
                         video_features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        video, audio = source["video"], source["audio"]
        assert [video, audio, video_features].count(None) == 2, "one stream at a time"
        self.encoded.append({"video": video, "audio": audio, "video_features": video_features,
                             "padding_mask": padding_mask, "output_layer": output_layer})
        if video is not None:
            video_features = self.forward_features(video, "video")
        content = video_features.transpose(1, 2) if audio is None else audio.transpose(1, 2)  # [B, T, DIM]
        return content + self.positions[: content.size(1)], padding_mask


def _net_output() -> dict[str, Any]:
    g = torch.Generator().manual_seed(3)
    return {
        "logit_m_list": [torch.randn(6, 5, generator=g)],
        "logit_u_list": [torch.randn(4, 5, generator=g)],
        "target_m_list": [torch.randint(0, 5, (6,), generator=g)],
        "target_u_list": [torch.randint(0, 5, (4,), generator=g)],
        "features_pen": torch.tensor(0.25),
    }


def _clips(frames: int = FRAMES, lengths: tuple[int, ...] = LENGTHS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-instant content vectors of each clip's lips and audio [B, T, DIM], and the padding mask."""
    g = torch.Generator().manual_seed(1)
    lips = torch.randn(len(lengths), frames, DIM, generator=g)
    sound = torch.randn(len(lengths), frames, DIM, generator=g)
    padding = torch.arange(frames)[None, :] >= torch.tensor(lengths)[:, None]
    return lips, sound, padding


def _sample(lips: torch.Tensor, sound: torch.Tensor, padding: torch.Tensor) -> dict[str, Any]:
    batch, frames, _ = lips.shape
    video = lips.reshape(batch, 1, frames, SIDE, SIDE)  # frame t's pixels are lips[:, t]
    audio = sound.transpose(1, 2).contiguous()  # [B, DIM, T]
    return {"id": torch.arange(batch), "target_list": [],
            "net_input": {"source": {"video": video, "audio": audio}, "padding_mask": padding}}


def _model(frames: int = FRAMES, share: bool = False) -> StubModel:
    positions = 2.0 * torch.randn(frames, DIM, generator=torch.Generator().manual_seed(2))
    return StubModel(_net_output(), positions, substitutes_video_features=share)


def _criterion(**options: Any) -> AVAlignmentCriterion:
    settings = {"pred_masked_weight": 1.0, "pred_nomask_weight": 0.0, "loss_weights": [10.0],
                "alignment_weight": 0.7, "alignment_temperature": TAU, "alignment_negatives": "batch",
                "alignment_max_shift": 0, "alignment_clip_weight": 0.0, **options}
    return AVAlignmentCriterion(None, **settings)


# ---- the direct computation ----------------------------------------------------------------

def _nce(query: torch.Tensor, keys: list[torch.Tensor], positive: int) -> float:
    """-log softmax of the positive among ``<query, key> / TAU`` over unit vectors, in float64."""
    logits = [float(F.cosine_similarity(query.double(), key.double(), dim=0)) / TAU for key in keys]
    peak = max(logits)
    return peak + math.log(sum(math.exp(v - peak) for v in logits)) - logits[positive]


def _pairs(model: StubModel, lips: torch.Tensor, sound: torch.Tensor, lengths: tuple[int, ...],
           shift: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per clip, the (video, audio) encodings of every valid instant both excerpts hold.

    Video excerpt = instants [max(d, 0), T - max(-d, 0)), audio = [max(-d, 0), T - max(d, 0)):
    instant t sits at row t - max(d, 0) of the video excerpt and t - max(-d, 0) of the audio one.
    """
    frames = lips.size(1)
    video_start, audio_start = max(shift, 0), max(-shift, 0)
    pairs = []
    for b, length in enumerate(lengths):
        instants = range(abs(shift), min(frames - abs(shift), length))
        pairs.append([(lips[b, t] + model.positions[t - video_start], sound[b, t] + model.positions[t - audio_start])
                      for t in instants])
    return pairs


def _frame_term(pairs: list[list[tuple[torch.Tensor, torch.Tensor]]], negatives: str) -> tuple[float, int]:
    groups = [[p for clip in pairs for p in clip]] if negatives == "batch" else pairs
    total, n = 0.0, 0
    for group in groups:
        videos, audios = [v for v, _ in group], [a for _, a in group]
        for i, (v, a) in enumerate(group):
            total += 0.5 * (_nce(v, audios, i) + _nce(a, videos, i))
            n += 1
    return total / n, n


def _clip_term(model: StubModel, lips: torch.Tensor, sound: torch.Tensor, lengths: tuple[int, ...],
               shift: int) -> float:
    """Symmetric CE over clips of C_bc = mean cosine of clip b's lips and clip c's audio encodings
    over the instants both excerpts hold and both clips have."""
    frames, batch = lips.size(1), len(lengths)
    video_start, audio_start = max(shift, 0), max(-shift, 0)
    means = torch.zeros(batch, batch, dtype=torch.float64)
    for b in range(batch):
        for c in range(batch):
            instants = range(abs(shift), min(frames - abs(shift), lengths[b], lengths[c]))
            means[b, c] = sum(float(F.cosine_similarity(
                (lips[b, t] + model.positions[t - video_start]).double(),
                (sound[c, t] + model.positions[t - audio_start]).double(), dim=0)) for t in instants) / len(instants)
    logits = means / TAU
    return sum(float(torch.logsumexp(logits[b], 0) - logits[b, b])
               + float(torch.logsumexp(logits[:, b], 0) - logits[b, b])
               for b in range(batch)) / (2 * batch)


def _masked_part(net: dict[str, Any], features_pen_weight: float) -> tuple[float, int]:
    n = net["target_m_list"][0].numel()
    masked = float(F.cross_entropy(net["logit_m_list"][0].double(), net["target_m_list"][0], reduction="sum"))
    return masked + features_pen_weight * float(net["features_pen"]) * n, n


def _observed_shift(model: StubModel, sample: dict[str, Any]) -> int:
    """The shift between the excerpts the criterion encoded, read off the recorded inputs."""
    source = sample["net_input"]["source"]
    (audio_call,) = [c for c in model.encoded if c["audio"] is not None]
    (video_call,) = [c for c in model.encoded if c["audio"] is None]
    if video_call["video"] is not None:
        video, full_video = video_call["video"], source["video"]
    else:  # an excerpt of the clean clip's lip front-end output [B, DIM, T]
        video, full_video = video_call["video_features"], source["video"][:, 0].flatten(2).transpose(1, 2)
    length = video.size(2)
    assert audio_call["audio"].size(2) == length, "both excerpts have one length"

    def start(full: torch.Tensor, excerpt: torch.Tensor) -> int:
        starts = [s for s in range(full.size(2) - length + 1) if torch.equal(full[:, :, s:s + length], excerpt)]
        assert len(starts) == 1, "the excerpt is one contiguous run of the clip's frames"
        return starts[0]

    video_start, audio_start = start(full_video, video), start(source["audio"], audio_call["audio"])
    assert length == source["audio"].size(-1) - abs(video_start - audio_start)
    padding = sample["net_input"]["padding_mask"]
    assert torch.equal(video_call["padding_mask"], padding[:, video_start:video_start + length])
    assert torch.equal(audio_call["padding_mask"], padding[:, audio_start:audio_start + length])
    return video_start - audio_start


# ---- tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("share", [False, True], ids=["two_lip_passes", "shared_lip_pass"])
@pytest.mark.parametrize("negatives", ["batch", "clip"])
@pytest.mark.parametrize("clip_weight", [0.0, 1.5])
def test_loss_and_logs_equal_the_direct_computation(negatives: str, clip_weight: float, share: bool) -> None:
    lips, sound, padding = _clips()
    criterion = _criterion(alignment_negatives=negatives, alignment_max_shift=3, alignment_clip_weight=clip_weight)
    seen = set()
    for seed in range(30):
        model, sample = _model(share=share), _sample(lips, sound, padding)
        torch.manual_seed(seed)
        loss, sample_size, log = criterion(model, sample)
        shift = _observed_shift(model, sample)
        assert model.front_end_runs == 1, "the lip front end runs once in the alignment term or once shared"
        if share:
            # The masked-prediction pass got the clean clip's front-end output, not a second pass.
            assert torch.equal(model.forward_kwargs["video_features"], lips.transpose(1, 2))
        else:
            assert "video_features" not in model.forward_kwargs
        torch.manual_seed(seed)
        assert shift == int(torch.randint(-3, 4, ())), "the excerpts are shifted by the drawn d"
        seen.add(shift)

        pairs = _pairs(model, lips, sound, LENGTHS, shift)
        align, n_frames = _frame_term(pairs, negatives)
        masked, n = _masked_part(model.net_output, 10.0)
        term = 0.7 * align * n
        if clip_weight > 0:
            clip = _clip_term(model, lips, sound, LENGTHS, shift)
            term += clip_weight * clip * n
        assert sample_size == n
        assert loss.item() == pytest.approx(masked + term, rel=1e-5)
        assert log["loss"] == pytest.approx(masked + term, rel=1e-5)
        assert log["loss_alignment"] == pytest.approx(term, rel=1e-5)
        assert log["loss_features_pen"] == pytest.approx(10.0 * 0.25 * n, rel=1e-6)
        assert log["alignment_frames"] == n_frames == sum(len(clip) for clip in pairs)
        assert log["alignment_nce"] == pytest.approx(align * n_frames, rel=1e-5)
        if clip_weight > 0:
            assert log["alignment_clips"] == 3
            assert log["alignment_clip_nce"] == pytest.approx(clip * 3, rel=1e-5)
        else:
            assert not {"alignment_clips", "alignment_clip_nce"} & set(log)
    assert seen == set(range(-3, 4)), "the draw covers [-S, S]: both signs and 0"


def test_shift_changes_the_loss() -> None:
    # The position codes make the loss depend on d, not only on which instants are kept: a
    # criterion that encoded both streams from the same start would not match the computation.
    lips, sound, _ = _clips()
    model = _model()
    for shift in (-2, 2):
        shifted, _ = _frame_term(_pairs(model, lips, sound, LENGTHS, shift), "batch")
        same_rows = [[(lips[b, t] + model.positions[t - abs(shift)], sound[b, t] + model.positions[t - abs(shift)])
                      for t in range(abs(shift), min(FRAMES - abs(shift), length))]
                     for b, length in enumerate(LENGTHS)]
        assert abs(shifted - _frame_term(same_rows, "batch")[0]) > 0.05


def test_logged_alignment_metrics_are_per_frame_and_per_clip_means() -> None:
    lips, sound, padding = _clips()
    criterion = _criterion(alignment_negatives="clip", alignment_max_shift=2, alignment_clip_weight=1.0)
    logs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        logs.append(criterion(_model(), _sample(lips, sound, padding))[2])
    with metrics.aggregate() as agg:
        AVAlignmentCriterion.reduce_metrics(logs)
    values = agg.get_smoothed_values()
    frames = logs[0]["alignment_frames"] + logs[1]["alignment_frames"]
    assert values["alignment_nce"] == pytest.approx(
        (logs[0]["alignment_nce"] + logs[1]["alignment_nce"]) / frames, abs=1e-3)
    clip_nce = (logs[0]["alignment_clip_nce"] + logs[1]["alignment_clip_nce"]) / 6
    assert values["alignment_clip_nce"] == pytest.approx(clip_nce, abs=1e-3)
    size = logs[0]["sample_size"] + logs[1]["sample_size"]
    loss_alignment = (logs[0]["loss_alignment"] + logs[1]["loss_alignment"]) / size / math.log(2)
    assert values["loss_alignment"] == pytest.approx(loss_alignment, abs=1e-3)


def test_gradients_stay_finite_with_padding_and_shift() -> None:
    # Shifted by 3, clip 1 (4 valid frames) keeps 1 valid instant and clip 2 (3 valid frames)
    # none: whole rows and blocks of the logits are masked.
    lips, sound, padding = _clips(lengths=(10, 4, 3))
    lips.requires_grad_(True)
    sound.requires_grad_(True)
    for negatives in ("batch", "clip"):
        criterion = _criterion(alignment_negatives=negatives, alignment_max_shift=3, alignment_clip_weight=1.0)
        for seed in range(6):
            torch.manual_seed(seed)
            loss, _, _ = criterion(_model(), _sample(lips, sound, padding))
            lips.grad = sound.grad = None
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(lips.grad).all() and torch.isfinite(sound.grad).all()


@pytest.mark.parametrize("weight", [0.0, -1.0])
def test_zero_alignment_weight_is_masked_prediction_alone(weight: float) -> None:
    lips, sound, padding = _clips()
    model = _model()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    criterion = _criterion(alignment_weight=weight, alignment_max_shift=3)
    loss, sample_size, log = criterion(model, _sample(lips, sound, padding))
    masked, n = _masked_part(model.net_output, 10.0)
    assert model.encoded == [], "nothing is encoded for the alignment term"
    assert torch.equal(torch.get_rng_state(), state), "no shift is drawn"
    assert sample_size == n and loss.item() == pytest.approx(masked, rel=1e-6)
    assert not [key for key in log if key.startswith("alignment_") or key == "loss_alignment"]


def test_zero_alignment_weight_keeps_the_clip_term() -> None:
    # The two weights are independent (README: the clip term is added as w·L_clip·n): with the
    # frame term off, the clip term alone is added, and the frame term is still logged.
    lips, sound, padding = _clips()
    model = _model()
    torch.manual_seed(0)
    criterion = _criterion(alignment_weight=0.0, alignment_clip_weight=2.0)
    loss, sample_size, log = criterion(model, _sample(lips, sound, padding))
    masked, n = _masked_part(model.net_output, 10.0)
    assert sample_size == n
    clip = _clip_term(model, lips, sound, LENGTHS, 0)
    align, n_frames = _frame_term(_pairs(model, lips, sound, LENGTHS, 0), "batch")
    assert loss.item() == pytest.approx(masked + 2.0 * clip * n, rel=1e-5)
    assert log["loss_alignment"] == pytest.approx(2.0 * clip * n, rel=1e-5)
    assert log["alignment_clip_nce"] == pytest.approx(3 * clip, rel=1e-5)
    assert log["alignment_nce"] == pytest.approx(align * n_frames, rel=1e-5)


def test_zero_max_shift_encodes_whole_clips_and_draws_nothing() -> None:
    lips, sound, padding = _clips()
    for seed in range(4):
        model, sample = _model(), _sample(lips, sound, padding)
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        _, _, log = _criterion(alignment_max_shift=0)(model, sample)
        assert torch.equal(torch.get_rng_state(), state)
        assert _observed_shift(model, sample) == 0
        assert model.encoded[0]["video"].size(2) == FRAMES
        align, _ = _frame_term(_pairs(model, lips, sound, LENGTHS, 0), "batch")
        assert log["alignment_nce"] == pytest.approx(align * sum(LENGTHS), rel=1e-5)


@pytest.mark.parametrize("frames, limit", [(10, 4), (9, 4), (3, 1), (2, 0), (1, 0)])
def test_shift_larger_than_a_clip_is_capped_to_leave_common_frames(frames: int, limit: int) -> None:
    lips, sound, padding = _clips(frames=frames, lengths=(frames, frames))
    seen = set()
    for seed in range(40):
        model, sample = _model(frames), _sample(lips, sound, padding)
        torch.manual_seed(seed)
        _, _, log = _criterion(alignment_max_shift=50, alignment_negatives="clip")(model, sample)
        shift = _observed_shift(model, sample)
        seen.add(shift)
        assert log["alignment_frames"] == 2 * (frames - 2 * abs(shift)) > 0
    assert seen == set(range(-limit, limit + 1))


def test_negative_max_shift_is_refused() -> None:
    with pytest.raises(ValueError, match="alignment_max_shift"):
        _criterion(alignment_max_shift=-1)


def test_alignment_layer_is_passed_to_the_encoder() -> None:
    lips, sound, padding = _clips()
    model = _model()
    _criterion(alignment_layer=2)(model, _sample(lips, sound, padding))
    assert [call["output_layer"] for call in model.encoded] == [2, 2]
