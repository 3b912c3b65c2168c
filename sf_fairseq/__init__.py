"""sf_fairseq: SpeechForensics on fairseq.

Importing this package registers the project's fairseq task (``av_hubert_pretraining``), models
(``av_hubert``, ``av_hubert_seq2seq``) and criteria (``av_hubert``, ``av_hubert_alignment``), and makes fairseq's own
checkpoint loading work on torch >= 2.6 with an explicit allow-list of the classes
fairseq/AV-HuBERT checkpoints contain (see :mod:`sf_fairseq.checkpoint`).
"""

from ._logging import drop_library_chatter, preserve_root_logging

drop_library_chatter()  # first: fairseq logs "Please install tensorboardX" while being imported

with preserve_root_logging():  # importing fairseq sets the root logger to DEBUG otherwise
    from . import checkpoint
    from .criteria.av_alignment_criterion import AVAlignmentCriterion, AVAlignmentCriterionConfig
    from .criteria.av_hubert_criterion import AVHubertCriterion, AVHubertCriterionConfig
    from .models.av_hubert import AVHubertConfig, AVHubertModel
    from .models.av_hubert_seq2seq import AVHubertSeq2Seq, AVHubertSeq2SeqConfig
    from .tasks.av_hubert_pretraining import AVHubertPretrainingConfig, AVHubertPretrainingTask

__version__ = "0.1.0"

checkpoint.install_allow_list()
checkpoint.install_fairseq_loader()
checkpoint.register_config_upgrade("model", "av_hubert", AVHubertConfig)
checkpoint.register_config_upgrade("model", "av_hubert_seq2seq", AVHubertSeq2SeqConfig)
checkpoint.register_config_upgrade("task", "av_hubert_pretraining", AVHubertPretrainingConfig)
checkpoint.register_config_upgrade("criterion", "av_hubert", AVHubertCriterionConfig)
checkpoint.register_config_upgrade("criterion", "av_hubert_alignment", AVAlignmentCriterionConfig)

__all__ = [
    "AVAlignmentCriterion",
    "AVHubertConfig",
    "AVHubertCriterion",
    "AVHubertModel",
    "AVHubertPretrainingConfig",
    "AVHubertPretrainingTask",
    "AVHubertSeq2Seq",
    "AVHubertSeq2SeqConfig",
    "checkpoint",
]
