"""From a checkpoint and clips to score records: what the scoring commands share.

:func:`load_scorer` builds a :class:`Scorer` from a checkpoint file (published AV-HuBERT
pretrained or fine-tuned, or ours); :meth:`Scorer.score_clips` encodes a batch of loaded clips
stream by stream and applies SpeechForensics' rule (:mod:`.score`) to each;
Clips of similar length share a model call through :mod:`sf_fairseq.data.batching`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from . import score as sc
from .encode import PRECISION_CHOICES, ClipInputs, InputSettings, StreamEncoder, resolve_precision


@dataclass(frozen=True)
class ScoreOptions:
    """Score rule settings.

    Attributes:
        max_offset: ``K``, largest audio-video offset searched, in frames (15 = ±0.6 s).
        max_seconds: only the first ``max_seconds`` of each stream are used (None = all).
        fps: feature frame rate of the model (25 for AV-HuBERT).
    """

    max_offset: int = sc.DEFAULT_MAX_OFFSET
    max_seconds: float | None = sc.DEFAULT_MAX_SECONDS
    fps: float = sc.DEFAULT_FPS

    @property
    def max_frames(self) -> int | None:
        return None if self.max_seconds is None else int(round(self.max_seconds * self.fps))


@dataclass
class ClipResult:
    """One clip's score, with the per-frame similarities kept for windowed analyses.

    ``sims`` is ``s_i(k)``, shape ``(T, 2K + 1)``, on CPU.
    """

    score: float
    best_offset: int
    best_offset_ms: float
    curve: list[float]
    n_frames: int
    sims: torch.Tensor

    def as_record(self) -> dict[str, Any]:
        """The JSON-ready fields of a score record (see :mod:`.results`)."""
        return {
            "score": self.score,
            "best_offset": self.best_offset,
            "best_offset_ms": self.best_offset_ms,
            "n_frames": self.n_frames,
            "curve": self.curve,
        }


class Scorer:
    """Encodes clips with a :class:`StreamEncoder` and scores them."""

    def __init__(
        self,
        encoder: StreamEncoder,
        settings: InputSettings = InputSettings(),
        options: ScoreOptions = ScoreOptions(),
    ):
        self.encoder = encoder
        self.settings = settings
        self.options = options

    def score_clips(self, clips: Sequence[ClipInputs]) -> list[ClipResult]:
        """Score a batch of clips with one model call per stream."""
        opts = self.options
        v, vlen, a, alen = self.encoder.encode(clips)
        sims, mask = sc.batch_frame_similarities(v, vlen, a, alen, opts.max_offset, opts.max_frames)
        curves = sc.batch_offset_curves(sims, mask)
        scores, best = curves.max(dim=1)
        sims, mask, curves = sims.cpu(), mask.cpu(), curves.cpu()
        n_frames = mask.sum(1).tolist()
        results = []
        for row in range(len(clips)):
            offset = int(best[row]) - opts.max_offset
            results.append(
                ClipResult(
                    score=float(scores[row]),
                    best_offset=offset,
                    best_offset_ms=offset * 1000.0 / opts.fps,
                    curve=[float(x) for x in curves[row]],
                    n_frames=int(n_frames[row]),
                    sims=sims[row, : n_frames[row]],
                )
            )
        return results


def pick_device(cpu: bool = False) -> torch.device:
    """CUDA when available and not ``cpu``, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


def load_scorer(
    checkpoint: str | os.PathLike,
    device: torch.device | str = "cpu",
    layer: int | None = None,
    precision: str = "fp32",
    trust_checkpoint: bool = False,
    options: ScoreOptions = ScoreOptions(),
) -> Scorer:
    """A :class:`Scorer` for the AV-HuBERT encoder in ``checkpoint`` (input settings from the
    checkpoint's task config). ``precision`` may be ``auto`` (:func:`resolve_precision` for
    ``device``); ``scorer.encoder.precision`` is the one used."""
    from sf_fairseq.checkpoint import load_encoder

    model, task_cfg = load_encoder(checkpoint, trust_checkpoint=trust_checkpoint)
    encoder = StreamEncoder(model, device=device, output_layer=layer, precision=precision)
    return Scorer(encoder, InputSettings.from_task_config(task_cfg), options)


def add_scorer_arguments(parser: argparse.ArgumentParser, checkpoint_flag: str = "--path") -> None:
    """The options every scoring command shares: checkpoint, layer, device, precision, score rule."""
    parser.add_argument(checkpoint_flag, required=True, dest=checkpoint_flag.lstrip("-"),
                        help="checkpoint file (AV-HuBERT pretrained or fine-tuned)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow arbitrary pickled objects in the checkpoint (only for files you trust)")
    parser.add_argument("--layer", type=int, default=None,
                        help="transformer block whose output is used (default: final output)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even if a GPU is available")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                           help="auto (default): bf16 where the device runs it natively (a GPU with "
                                "bf16 units, a CPU with AVX512_BF16 or AMX), else fp32; bf16/fp16 "
                                "autocast otherwise. The record says which was used")
    precision.add_argument("--bf16", dest="precision", action="store_const", const="bf16",
                           help="same as --precision bf16")
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                           help="same as --precision fp16")
    parser.add_argument("--max-offset", type=int, default=sc.DEFAULT_MAX_OFFSET,
                        help="largest audio-video offset searched (frames)")
    parser.add_argument("--max-seconds", type=float, default=sc.DEFAULT_MAX_SECONDS,
                        help="use the first N seconds of each clip (0 = all)")


def precision_from_arguments(args: argparse.Namespace, device: torch.device | str | None = None) -> str:
    """``fp32``, ``bf16`` or ``fp16``: the options of :func:`add_scorer_arguments` resolved for
    ``device`` (default: :func:`pick_device` of ``--cpu``), never ``auto``."""
    return resolve_precision(args.precision, pick_device(args.cpu) if device is None else device)


def load_scorer_from_arguments(
    args: argparse.Namespace, checkpoint: str, device: torch.device, precision: str | None = None
) -> Scorer:
    """The scorer that the options of :func:`add_scorer_arguments` describe, on ``device``.

    ``precision`` overrides ``--precision``: a driver that resolved it for its model workers'
    device passes the result, so that every worker runs (and records) the same one.
    """
    options = ScoreOptions(max_offset=args.max_offset, max_seconds=args.max_seconds or None)
    precision = precision_from_arguments(args, device) if precision is None else precision
    return load_scorer(checkpoint, device, args.layer, precision, args.trust_checkpoint, options)
