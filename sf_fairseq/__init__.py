"""sf_fairseq: SpeechForensics on fairseq.

``import sf_fairseq`` is light: it imports neither torch nor fairseq, so numpy-only stages
(reports, metrics, preprocessing workers) do not pay for them. The fairseq plugin (the task
``av_hubert_pretraining``, the models ``av_hubert`` and ``av_hubert_seq2seq``, the criteria
``av_hubert`` and ``av_hubert_alignment``, and safe loading of fairseq checkpoints on torch >= 2.6,
see :mod:`sf_fairseq.checkpoint`) is registered as soon as fairseq is imported, so that after
``import sf_fairseq``, ``fairseq.checkpoint_utils.load_model_ensemble_and_task`` loads AV-HuBERT
checkpoints. :mod:`sf_fairseq.plugin` states the exact contract.

The model, task and criterion classes are importable from here (``sf_fairseq.AVHubertModel``);
they are loaded, with torch and fairseq, on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import plugin

__version__ = "0.1.0"

plugin.register_on_fairseq_import()

# Public name -> the module that defines it (imported on first access: PEP 562).
_LAZY_NAMES: dict[str, str] = {
    "AVAlignmentCriterion": "sf_fairseq.criteria.av_alignment_criterion",
    "AVAlignmentCriterionConfig": "sf_fairseq.criteria.av_alignment_criterion",
    "AVHubertCriterion": "sf_fairseq.criteria.av_hubert_criterion",
    "AVHubertCriterionConfig": "sf_fairseq.criteria.av_hubert_criterion",
    "AVHubertConfig": "sf_fairseq.models.av_hubert",
    "AVHubertModel": "sf_fairseq.models.av_hubert",
    "AVHubertSeq2Seq": "sf_fairseq.models.av_hubert_seq2seq",
    "AVHubertSeq2SeqConfig": "sf_fairseq.models.av_hubert_seq2seq",
    "AVHubertPretrainingConfig": "sf_fairseq.tasks.av_hubert_pretraining",
    "AVHubertPretrainingTask": "sf_fairseq.tasks.av_hubert_pretraining",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        plugin.register()
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    if name == "checkpoint":
        return importlib.import_module("sf_fairseq.checkpoint")
    raise AttributeError(f"module 'sf_fairseq' has no attribute {name!r}")


__all__ = [*sorted(_LAZY_NAMES), "checkpoint", "plugin"]
