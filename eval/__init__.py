"""Forgery scores from AV-HuBERT checkpoints, SpeechForensics style (``sf_fairseq.eval``).

The lip stream and the speech stream of a clip are encoded separately (the other stream
zeroed, as ``extract_finetune`` does) and compared frame by frame over a range of offsets;
the score is the best mean cosine similarity (higher = more likely real).

Modules, in data-flow order:

* :mod:`.lists` - clips to score: SpeechForensics ``test_list.txt``, CSV, manifest splits;
  dataset categories (FF++, FakeAVCeleb, KoDF).
* :mod:`.encode` - clip loading with the reference transforms, batched stream-by-stream encoding.
* :mod:`.score` - the score rule as tensor functions (plus per-window and dynamic-offset variants).
* :mod:`.pipeline` - checkpoint -> :class:`~.pipeline.Scorer` -> score records.
* :mod:`.results` - JSONL score records (streamed, resumable).
* :mod:`.metrics`, :mod:`.report` - AUC/AP/EER, bootstrap intervals, calibration, reports.

Commands: ``python -m sf_fairseq.eval.score_video`` (one video),
``python -m sf_fairseq.eval.score_batch`` (a dataset), ``python -m sf_fairseq.eval.metrics_cli``
(report and calibration from score records).
"""
