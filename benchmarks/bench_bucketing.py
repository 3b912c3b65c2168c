"""Length bucketing: time to score clips of mixed lengths at the default batch settings
against batch size 1, and the largest score difference between the two.

The clips are the issue's case: one 60 s clip and three 6 s clips (random 88x88 frames and
audio features, in memory: file decoding runs in loader processes and is not timed), in list
order long clip second. They go through what ``sf-score-batch`` does with loaded clips:
shortest first (:func:`sf_fairseq.eval.pipeline.length_order`), grouped by
:func:`sf_fairseq.eval.batch_engine.model_batches` under :class:`~sf_fairseq.eval.pipeline.BatchLimits`,
scored by :meth:`~sf_fairseq.eval.pipeline.Scorer.score_clips`. The model is a random-init
AV-HuBERT (``tiny`` by default; ``base`` for realistic proportions)::

    python benchmarks/bench_bucketing.py
    python benchmarks/bench_bucketing.py --size base --repeats 3 --device cuda

Without bucketing (list order, batch size 8) the four clips share one call padded to the long
clip's length: about 3x the work of batch size 1.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sf_fairseq.eval.encode import ClipInputs, StreamEncoder
from sf_fairseq.data.batching import BatchLimits, length_order
from sf_fairseq.eval.pipeline import ClipResult, ScoreOptions, Scorer
from sf_fairseq.eval.batch_engine import model_batches
from sf_fairseq.models.av_hubert import AVHubertConfig, AVHubertModel

SIZES = {
    "tiny": dict(encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4),
    "base": dict(encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12),
}


def mixed_clips(seconds: list[float], max_seconds: float | None, fps: float = 25.0) -> list[ClipInputs]:
    """Random clips of the given durations, cut to ``max_seconds`` as ``load_clip`` does."""
    rng = np.random.default_rng(0)
    clips = []
    for s in seconds:
        t = int(round(s * fps)) if max_seconds is None else int(round(min(s, max_seconds) * fps))
        clips.append(ClipInputs(rng.standard_normal((t, 88, 88), dtype=np.float32),
                                rng.standard_normal((t, 104), dtype=np.float32)))
    return clips


def score_all(scorer: Scorer, clips: list[ClipInputs], limits: BatchLimits) -> tuple[list[ClipResult], float]:
    """Scores in list order, and the seconds taken, scoring shortest first in batches."""
    order = length_order([c.video.shape[0] for c in clips])
    loaded = ((i, clips[i], None, None) for i in order)
    results: list[ClipResult | None] = [None] * len(clips)
    start = time.perf_counter()
    for batch, _ in model_batches(loaded, limits.batch_size, limits.max_frames, limits.max_padding):
        for (index, _), result in zip(batch, scorer.score_clips([clip for _, clip in batch])):
            results[index] = result
    if scorer.encoder.device.type == "cuda":
        torch.cuda.synchronize()
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="random-init model size")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each setting (best is kept)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[6.0, 60.0, 6.0, 6.0],
                        help="clip durations, in list order")
    args = parser.parse_args()

    torch.manual_seed(0)
    cfg = AVHubertConfig(label_rate=25, audio_feat_dim=104, layer_norm_first=True, final_dim=32, **SIZES[args.size])
    model = AVHubertModel.build_random(cfg, [10]).eval()
    options = ScoreOptions()
    scorer = Scorer(StreamEncoder(model, device=args.device), options=options)
    clips = mixed_clips(args.seconds, options.max_seconds)
    score_all(scorer, clips[:1], BatchLimits())  # warm-up

    default, single = BatchLimits(), BatchLimits(batch_size=1)
    timings = {}
    for name, limits in (("default", default), ("batch size 1", single)):
        runs = [score_all(scorer, clips, limits) for _ in range(args.repeats)]
        timings[name] = (runs[0][0], min(seconds for _, seconds in runs))
    diff = max(abs(a.score - b.score) for a, b in zip(timings["default"][0], timings["batch size 1"][0]))
    lengths = ", ".join(f"{c.video.shape[0]}" for c in clips)
    print(f"{args.size} model on {args.device}; clip lengths (frames, list order): {lengths}")
    for name, (_, seconds) in timings.items():
        print(f"  {name:>12}: {seconds:.3f} s")
    ratio = timings["default"][1] / timings["batch size 1"][1]
    print(f"  default / batch size 1: {ratio:.2f}x; largest score difference {diff:.2e}")


if __name__ == "__main__":
    main()
