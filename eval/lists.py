"""Lists of clips to score: SpeechForensics' ``test_list.txt``, CSV, or a manifest split.

Every reader returns :class:`EvalItem` rows with resolved paths, in file order; nothing is
checked on disk here (a missing file becomes a failed record at scoring time, not a lost line).

Formats:

* **SpeechForensics list** (any extension but ``.csv``): ``<relative path> <label>`` per line,
  label ``1`` = real, ``0`` = fake (``real``/``fake`` also accepted). Paths may contain spaces
  (17,455 FakeAVCeleb paths do), so each line is split on its *last* space, after trailing
  whitespace is removed. Every line needs a label: a missing or other label is an error naming
  the file and line. Blank lines and lines starting with ``#`` are skipped.
  The ROI video is ``data_root/<path>`` and its audio ``data_root/<path without extension>.wav``
  (SpeechForensics' ``mouth_dir`` layout).
* **CSV** (``.csv``) with a header: ``path,label`` required; ``category``, ``audio`` (default:
  the path with a ``.wav`` extension) and ``id`` (default: the path; set it to pair one video
  with several audio files) optional. Labels ``1``/``0`` or
  ``real``/``fake``; an empty label means unknown.
* **Manifest split**: ``{manifest_dir}/{gen_subset}.tsv`` (the AV-HuBERT manifest; see
  :mod:`sf_fairseq.data.manifest`). Labels, if any, come from ``{gen_subset}.forgery``
  beside it: one line per manifest item, ``<label>`` or ``<label> <category>``.

Categories (for per-category metrics) come from a column when there is one, else from the path
by a dataset convention (:data:`CATEGORY_RULES`): ``ffpp``, ``fakeavceleb``, ``kodf``, ``auto``
(tries the three in that order of specificity) or ``none``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sf_fairseq.data.manifest import read_label_lines, read_manifest

REAL = 1
FAKE = 0

# FaceForensics++ manipulation folders (``manipulated_sequences/<name>/`` or ``fake/<name>/``).
FFPP_MANIPULATIONS = (
    "Deepfakes",
    "FaceSwap",
    "Face2Face",
    "NeuralTextures",
    "FaceShifter",
    "DeepFakeDetection",
)
FAKEAVCELEB_CATEGORIES = (
    "RealVideo-RealAudio",
    "RealVideo-FakeAudio",
    "FakeVideo-RealAudio",
    "FakeVideo-FakeAudio",
)
# KoDF top-level folders (real: ``original_videos``), as in SpeechForensics' KoDF list.
KODF_CATEGORIES = ("original_videos", "audio-driven", "audio_driven", "dffs", "dfl", "fo", "fsgan")


class ListFormatError(ValueError):
    """A list file does not follow its format (the message names file and line)."""


@dataclass(frozen=True)
class EvalItem:
    """One clip to score.

    Attributes:
        id: unique key in the results (the path as written in the list, or the manifest id).
        video: resolved path of the mouth-ROI video.
        audio: resolved path of the 16 kHz mono wav.
        label: 1 = real, 0 = fake, None = unknown.
        category: dataset category (manipulation method, FakeAVCeleb class, ...) or None.
    """

    id: str
    video: str
    audio: str
    label: int | None
    category: str | None


def _parts(path: str) -> list[str]:
    return [p for p in path.replace("\\", "/").split("/") if p]


def ffpp_category(path: str) -> str | None:
    """FaceForensics++: the manipulation folder name, or ``real`` for ``original_sequences``
    / ``real`` folders (SpeechForensics' list uses ``real/`` and ``fake/<method>/``)."""
    parts = _parts(path)
    for name in FFPP_MANIPULATIONS:
        if name in parts:
            return name
    if "original_sequences" in parts or "real" in parts:
        return "real"
    return None


def fakeavceleb_category(path: str) -> str | None:
    """FakeAVCeleb: the ``{Real,Fake}Video-{Real,Fake}Audio`` folder in the path."""
    for part in _parts(path):
        if part in FAKEAVCELEB_CATEGORIES:
            return part
    return None


def kodf_category(path: str) -> str | None:
    """KoDF: the top-level method folder (``original_videos`` for the real clips)."""
    parts = _parts(path)
    for part in parts[:2]:  # the list's paths start at the method folder, maybe under a root
        if part in KODF_CATEGORIES:
            return part
    return None


def auto_category(path: str) -> str | None:
    """FakeAVCeleb, then FaceForensics++, then KoDF conventions; None if none matches."""
    return fakeavceleb_category(path) or ffpp_category(path) or kodf_category(path)


CATEGORY_RULES: dict[str, Callable[[str], str | None]] = {
    "auto": auto_category,
    "ffpp": ffpp_category,
    "fakeavceleb": fakeavceleb_category,
    "kodf": kodf_category,
    "none": lambda path: None,
}


def _parse_label(value: str, where: str) -> int | None:
    text = value.strip().lower()
    if text in ("1", "real"):
        return REAL
    if text in ("0", "fake"):
        return FAKE
    if text == "":
        return None
    raise ListFormatError(f"{where}: label must be 1/real or 0/fake, got {value!r}")


def _wav_beside(path: str) -> str:
    return os.path.splitext(path)[0] + ".wav"


def _resolve(root: str | None, path: str) -> str:
    return path if root is None or os.path.isabs(path) else os.path.join(root, path)


def read_speechforensics_list(
    path: str | os.PathLike, data_root: str | None = None, category_rule: str = "auto"
) -> list[EvalItem]:
    """Read ``<relative path> <label>`` lines (split on the last space)."""
    rule = CATEGORY_RULES[category_rule]
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            # Trailing whitespace is not part of the label: ``path 1 `` is ``path`` labelled 1,
            # and ``path `` has no label (an error, not an unknown label).
            line = line.rstrip()
            if not line or line.lstrip().startswith("#"):
                continue
            rel, sep, label = line.rpartition(" ")
            where = f"{os.fspath(path)}:{lineno}"
            if not sep or not rel.strip():
                raise ListFormatError(f"{where}: expected '<relative path> <label>', got {line!r}")
            items.append(
                EvalItem(
                    id=rel,
                    video=_resolve(data_root, rel),
                    audio=_resolve(data_root, _wav_beside(rel)),
                    label=_parse_label(label, where),
                    category=rule(rel),
                )
            )
    return items


def read_csv_list(
    path: str | os.PathLike, data_root: str | None = None, category_rule: str = "auto"
) -> list[EvalItem]:
    """Read a CSV with a ``path,label[,category][,audio][,id]`` header."""
    rule = CATEGORY_RULES[category_rule]
    items = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        missing = {"path", "label"} - set(fields)
        if missing:
            raise ListFormatError(
                f"{os.fspath(path)}: CSV header must name path and label columns, "
                f"missing {sorted(missing)} (header: {fields})"
            )
        for lineno, row in enumerate(reader, start=2):
            rel = (row["path"] or "").strip()
            where = f"{os.fspath(path)}:{lineno}"
            if not rel:
                raise ListFormatError(f"{where}: empty path")
            audio = (row.get("audio") or "").strip() or _wav_beside(rel)
            category = (row.get("category") or "").strip() or rule(rel)
            items.append(
                EvalItem(
                    id=(row.get("id") or "").strip() or rel,
                    video=_resolve(data_root, rel),
                    audio=_resolve(data_root, audio),
                    label=_parse_label(row["label"] or "", where),
                    category=category,
                )
            )
    return items


def read_list(
    path: str | os.PathLike, data_root: str | None = None, category_rule: str = "auto"
) -> list[EvalItem]:
    """A CSV (``.csv``) or SpeechForensics list, by extension."""
    if Path(path).suffix.lower() == ".csv":
        return read_csv_list(path, data_root, category_rule)
    return read_speechforensics_list(path, data_root, category_rule)


def read_manifest_split(
    manifest_dir: str | os.PathLike, gen_subset: str, category_rule: str = "auto"
) -> list[EvalItem]:
    """Items of ``{manifest_dir}/{gen_subset}.tsv`` with labels from ``{gen_subset}.forgery``."""
    manifest_dir = Path(manifest_dir)
    manifest = read_manifest(manifest_dir / f"{gen_subset}.tsv")
    rule = CATEGORY_RULES[category_rule]
    labels: list[tuple[int | None, str | None]] = [(None, None)] * len(manifest)
    label_path = manifest_dir / f"{gen_subset}.forgery"
    if label_path.is_file():
        lines = read_label_lines(label_path)
        if len(lines) != len(manifest):
            raise ListFormatError(
                f"{label_path}: {len(lines)} lines for {len(manifest)} manifest items"
            )
        labels = []
        for lineno, line in enumerate(lines, start=1):
            label, _, category = line.strip().partition(" ")
            labels.append((_parse_label(label, f"{label_path}:{lineno}"), category.strip() or None))
    return [
        EvalItem(
            id=item.id,
            video=manifest.resolve(item.video),
            audio=manifest.resolve(item.audio),
            label=label,
            category=category or rule(item.video),
        )
        for item, (label, category) in zip(manifest.items, labels)
    ]
