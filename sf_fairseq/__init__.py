"""sf_fairseq: SpeechForensics on fairseq.

Importing this package registers the project's fairseq tasks, models and criteria, and makes
fairseq's own checkpoint loading work on torch >= 2.6 through an explicit allow-list of the
classes fairseq/AV-HuBERT checkpoints contain (see :mod:`sf_fairseq.checkpoint`).
"""

__version__ = "0.1.0"
