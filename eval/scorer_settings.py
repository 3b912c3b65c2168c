"""Which scorer a scoring stage loads, as one typed value: the options of
:func:`.pipeline.add_scorer_arguments` (checkpoint, layer, device, precision, score rule), for
stages called as functions rather than from a command line."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from . import score as sc


@dataclass(frozen=True)
class ScorerSettings:
    """A scorer's checkpoint and settings.

    Attributes:
        checkpoint: the AV-HuBERT checkpoint file.
        layer: transformer block whose output is used (None: the final output).
        cpu: run on CPU even where a GPU is available.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (``auto`` is resolved per device).
        trust_checkpoint: allow arbitrary pickled objects in the checkpoint.
        max_offset: largest audio-video offset searched (frames).
        max_seconds: only the first N seconds of each clip (None or 0: all).
    """

    checkpoint: str | os.PathLike
    layer: int | None = None
    cpu: bool = False
    precision: str = "auto"
    trust_checkpoint: bool = False
    max_offset: int = sc.DEFAULT_MAX_OFFSET
    max_seconds: float | None = sc.DEFAULT_MAX_SECONDS

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, checkpoint: str | os.PathLike) -> "ScorerSettings":
        """The settings that :func:`.pipeline.add_scorer_arguments`' options describe."""
        return cls(checkpoint, args.layer, args.cpu, args.precision, args.trust_checkpoint, args.max_offset,
                   args.max_seconds)

    def arguments(self) -> argparse.Namespace:
        """These settings as the options of :func:`.pipeline.add_scorer_arguments` (for the
        helpers that read them from there)."""
        return argparse.Namespace(layer=self.layer, cpu=self.cpu, precision=self.precision,
                                  trust_checkpoint=self.trust_checkpoint, max_offset=self.max_offset,
                                  max_seconds=self.max_seconds)

    def resolved_precision(self) -> str:
        """``fp32``, ``bf16`` or ``fp16`` on this scorer's device (never ``auto``)."""
        from .pipeline import precision_from_arguments

        return precision_from_arguments(self.arguments())

    def load(self):
        """The :class:`.pipeline.Scorer` (CUDA when available and not ``cpu``)."""
        from .pipeline import load_scorer_from_arguments, pick_device

        return load_scorer_from_arguments(self.arguments(), os.fspath(self.checkpoint), pick_device(self.cpu))
