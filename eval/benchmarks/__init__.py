"""Benchmark-native evaluation: datasets' own metadata in, their tables and challenge files out.

* :mod:`.items` - typed items and problem records;
* :mod:`.readers` - one reader per dataset (FakeAVCeleb, FaceForensics++, KoDF, AV-Deepfake1M,
  LAV-DF, SpeechForensics lists), with the source of every format fact;
* :mod:`.localisation` - AP@IoU and AR@N exactly as the official AV-Deepfake1M SDK;
* :mod:`.proposals` - fake-segment proposals from per-frame lip-speech agreement;
* :mod:`.challenge` - the SDK's prediction file formats;
* :mod:`.report` - the paper-style table.

The command is :mod:`sf_fairseq.eval.benchmark` (``sf-benchmark``).
"""

from .items import FAKE, REAL, BenchmarkItem, BenchmarkSet, ItemProblem, MetadataError
from .readers import READERS

__all__ = ["REAL", "FAKE", "BenchmarkItem", "BenchmarkSet", "ItemProblem", "MetadataError", "READERS"]
