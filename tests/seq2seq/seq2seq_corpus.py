"""A generated corpus with transcripts for seq2seq tests (clips from tests/sf_test_media.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sf_fairseq.data.manifest import read_manifest
from sf_test_media import write_corpus

WORDS = "red green blue one two three yes no stop go".split()


def write_transcribed_corpus(root: Path, splits: dict[str, int], frames: tuple[int, int] = (20, 30)) -> Path:
    """Clips + manifests (``write_corpus``) and ``transcripts.txt`` (``id<TAB>words``) beside
    ``root``. Returns the transcript list path."""
    write_corpus(root, splits, frames=frames)
    rng = np.random.default_rng(1)
    lines = []
    for split in splits:
        for item in read_manifest(root / f"{split}.tsv").items:
            lines.append(f"{item.id}\t{' '.join(rng.choice(WORDS, 3)).upper()}")
    path = root.parent / "transcripts.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
