"""One reader per benchmark, from the dataset's own on-disk layout and metadata files.

Every reader returns a :class:`.items.BenchmarkSet`. Entries whose video (or separate audio) is
missing on disk, and entries the protocol excludes, become :class:`.items.ItemProblem` records;
metadata that does not follow the format raises :class:`.items.MetadataError` naming the file and
entry. Nothing is dropped silently.

Where each format fact comes from (read at the commits given):

**FakeAVCeleb** (:func:`read_fakeavceleb`). The dataset ships ``meta_data.csv`` with the
download; the official repository (``DASH-Lab/FakeAVCeleb`` @0d8d22a, ``README.md``,
``dataset/README.md``) does not document it, so the columns are taken from public readers of
the file: ``bit-ml/AVH-Align`` @55401de ``deepfake_preprocess.py::process_fakeavceleb`` (columns
``type`` = the category folder, ``filename``, ``path`` = the clip's folder prefixed with
``FakeAVCeleb/``) and ``avh_sup/csv_metadata/favc/test_split.csv`` + ``avh_sup/datasets.py``
(``category`` letter ``A`` = real, ``B``/``C``/``D`` fake). The v1.2 file's header names nine
columns (``source,target1,target2,method,category,type,race,gender,path,``) while its rows hold
ten values (the file name, then the folder), as several public parsers of it note; both that
header and one naming ``filename,path`` are read. Categories: ``A`` RealVideo-RealAudio (RVRA),
``B`` RealVideo-FakeAudio (RVFA), ``C`` FakeVideo-RealAudio (FVRA), ``D`` FakeVideo-FakeAudio
(FVFA); the ``method`` column names the generator (``real``, ``rtvc``, ``wav2lip``,
``faceswap``, ``fsgan``, ``faceswap-wav2lip``, ``fsgan-wav2lip``, ...) and is kept as given.
Videos are ``<root>/<type>/<race>/<gender>/<source>/<file>``, the layout of
``Eleven4AI/SpeechForensics`` @70ff45b ``README.md`` and of its
``data/datasets/FakeAVCeleb/test_list.txt`` paths, which are this reader's item ids. FakeAVCeleb
has no official split: every row is an item.

**FaceForensics++** (:func:`read_ffpp`). Layout from ``ondyari/FaceForensics`` @b952e41
``dataset/README.md``: ``original_sequences/youtube/<c0|c23|c40>/videos/<NNN>.mp4`` and
``manipulated_sequences/<Method>/<c0|c23|c40>/videos/<target>_<source>.mp4`` (the older
``original_sequences/<comp>/videos`` of ``dataset/extract_compressed_videos.py`` is also read);
official splits ``dataset/splits/{train,val,test}.json`` (lists of ``[a, b]`` id pairs: the
originals ``a`` and ``b`` and the fakes ``a_b`` and ``b_a``; test = 70 pairs, 140 originals, 140
fakes per method). FF++ videos carry no audio: SpeechForensics (``README.md``, "Prepare data")
takes each original sequence's YouTube audio; a fake ``<target>_<source>`` keeps the target's
frames and timing, so it is paired with the target's audio, ``<audio_dir>/<target>.wav``.

**KoDF** (:func:`read_kodf`). Metadata files of the AI-Hub release, as read by
``HanMoonSub/DeepGuard`` @cde8ada ``preprocess/kodf/split_data.py`` and described in its
``preprocess/kodf/README.md``: ``원본영상_<split>_메타데이터.csv`` (original videos; column
``영상ID``, the video file name) and ``변조영상_<split>_메타데이터.csv`` (synthesised videos;
``영상ID``, ``타겟영상`` the target original, ``변조모델`` the model: ``dfl``, ``dffs``, ``fsgan``,
``fo``, ``audio-driven``), with ``<split>`` ``training`` or ``validation``. Videos lie in
``original_videos/<subject>/...`` and ``<model>/<date>/<subject>/...`` (the paths of
SpeechForensics' ``data/datasets/KoDF/test_list.txt``) and are found by file name. ``fsgan`` is
left out by default, as SpeechForensics does ("The videos we downloaded in fsgan do not contain
audio", ``README.md``); the left-out entries are reported as ``excluded``.

**AV-Deepfake1M / AV-Deepfake1M++** (:func:`read_avdeepfake1m`). ``ControlNet/AV-Deepfake1M``
@2c72275 ``README.md`` ("Metadata Structure", "Usage"): ``<split>_metadata.json`` is a list of
objects with ``file``, ``original``, ``split``, ``modify_type`` (``real``, ``visual_modified``,
``audio_modified``, ``both_modified``; the SDK's ``python/avdeepfake1m/loader.py`` spells the
last ``both-modified``, both are read), ``audio_model``, ``fake_segments`` (seconds),
``audio_fake_segments``, ``visual_fake_segments``, ``video_frames``, ``audio_frames``; videos are
``<root>/<split>/<file>``; the unlabelled test split lists its files in ``<split>_files.txt``
(``loader.py::AVDeepfake1mDataModule.setup``; ``test`` or, for ++, ``testA``/``testB``). A video
is fake iff its ``fake_segments`` is non-empty, the rule of the SDK's
``python/avdeepfake1m/evaluation/auc.py``.

**LAV-DF** (:func:`read_lavdf`). ``ControlNet/LAV-DF`` @51b8d91 ``dataset/lavdf.py``
(``Metadata``: ``file``, ``n_fakes``, ``fake_periods``, ``duration``, ``original``,
``modify_video``, ``modify_audio``, ``split``, ``video_frames``, ``audio_channels``,
``audio_frames``), ``utils.py::generate_metadata_min`` (``metadata.json`` also holds
``timestamps`` and ``transcript``; ``metadata.min.json`` drops them) and
``dataset/lavdf.py::LavdfDataModule`` (splits ``train``, ``dev``, ``test``; videos are
``<root>/<file>``). Categories are named as AV-Deepfake1M's ``modify_type`` from
``modify_video``/``modify_audio``.

**SpeechForensics lists** (:func:`read_speechforensics`): ``test_list.txt`` as read by
:func:`sf_fairseq.eval.lists.read_speechforensics_list` (mouth-ROI videos and wavs, already
prepared). Its KoDF list has no ``fsgan`` line (1000 original, 1000 audio-driven, 1000 dffs, 1000
dfl, 832 fo), the "KoDF without fsgan" choice above.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import lists
from .items import FAKE, REAL, BenchmarkItem, BenchmarkSet, ItemProblem, MetadataError, Segment

# ---- FakeAVCeleb ------------------------------------------------------------------------------

FAKEAVCELEB_TYPES = {
    "A": "RealVideo-RealAudio",
    "B": "RealVideo-FakeAudio",
    "C": "FakeVideo-RealAudio",
    "D": "FakeVideo-FakeAudio",
}
_FAKEAVCELEB_NAMED = ("source", "target1", "target2", "method", "category", "type", "race", "gender")

# ---- FaceForensics++ --------------------------------------------------------------------------

FFPP_COMPRESSIONS = ("c0", "c23", "c40")
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
FFPP_DEFAULT_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
FFPP_SPLITS = ("train", "val", "test")

# ---- KoDF -------------------------------------------------------------------------------------

KODF_METHODS = ("dfl", "dffs", "fsgan", "fo", "audio-driven")
KODF_DEFAULT_METHODS = ("dfl", "dffs", "fo", "audio-driven")  # SpeechForensics: fsgan has no audio
KODF_SPLITS = ("training", "validation")
KODF_REAL_FOLDER = "original_videos"
_KODF_ID, _KODF_TARGET, _KODF_MODEL = "영상ID", "타겟영상", "변조모델"
_KODF_ENCODINGS = ("utf-8-sig", "cp949")  # AI-Hub CSVs come in either

# ---- AV-Deepfake1M / LAV-DF ------------------------------------------------------------------

MODIFY_TYPES = ("real", "visual_modified", "audio_modified", "both_modified")
_MODIFY_SPELLINGS = {**{t: t for t in MODIFY_TYPES}, "both-modified": "both_modified"}
LAVDF_SPLITS = ("train", "dev", "test")


# ---- shared helpers ---------------------------------------------------------------------------


def _require(entry: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in entry:
        raise MetadataError(f"{where}: missing field {key!r}")
    value = entry[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        raise MetadataError(f"{where}: field {key!r} must be {_type_names(types)}, got {value!r}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in _as_tuple(types))


def parse_segments(value: Any, where: str) -> tuple[Segment, ...]:
    """``[[start, end], ...]`` in seconds, each finite with ``0 <= start <= end``."""
    if not isinstance(value, list):
        raise MetadataError(f"{where}: segments must be a list of [start, end], got {value!r}")
    out = []
    for k, seg in enumerate(value):
        ok = (
            isinstance(seg, list)
            and len(seg) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in seg)
        )
        if not ok or not 0 <= seg[0] <= seg[1]:
            raise MetadataError(f"{where}: segment {k} must be [start, end] with 0 <= start <= end, got {seg!r}")
        out.append((float(seg[0]), float(seg[1])))
    return tuple(out)


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise MetadataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, list):
        raise MetadataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise MetadataError(f"{path}[{index}]: expected an object, got {entry!r}")
    return data


def _add(found: BenchmarkSet, item: BenchmarkItem, where: str) -> None:
    """Add ``item``, or a problem record when its video or separate audio is not on disk."""
    if not os.path.isfile(item.video):
        found.problems.append(ItemProblem(item.id, where, "missing_video", f"no video at {item.video}",
                                          item.label, item.category))
    elif item.audio is not None and not os.path.isfile(item.audio):
        found.problems.append(ItemProblem(item.id, where, "missing_audio", f"no audio at {item.audio}",
                                          item.label, item.category))
    else:
        found.items.append(item)


def _finish(found: BenchmarkSet) -> BenchmarkSet:
    found.check_unique_ids()
    return found


# ---- FakeAVCeleb ------------------------------------------------------------------------------


def _fakeavceleb_file(names: list[str], row: list[str], where: str) -> tuple[str, str]:
    """(file name, folder) of a row, for either header variant (see the module docstring)."""
    values = list(row)
    while values and values[-1] == "" and len(values) > len(names):
        values.pop()
    if "filename" in names and len(values) == len(names):
        return values[names.index("filename")], values[names.index("path")]
    if "path" in names and len(values) == len(names) + 1 and names[-1] == "path":
        return values[-2], values[-1]  # v1.2: the header's last name covers two values
    if "path" in names and len(values) == len(names) and values[names.index("path")].endswith(".mp4"):
        folder, _, name = values[names.index("path")].rpartition("/")
        return name, folder
    raise MetadataError(
        f"{where}: expected {len(names) + 1} values (the header's columns with file name and folder), "
        f"got {len(values)}: {row!r}"
    )


def read_fakeavceleb(root: str | os.PathLike, metadata: str | os.PathLike | None = None) -> BenchmarkSet:
    """FakeAVCeleb from ``meta_data.csv`` (default ``<root>/meta_data.csv``)."""
    root = Path(root).resolve()
    path = Path(metadata) if metadata is not None else root / "meta_data.csv"
    found = BenchmarkSet("fakeavceleb", sources=[str(path)])
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise MetadataError(f"{path}: empty file")
    names = [name.strip() for name in rows[0]]
    while names and names[-1] == "":
        names.pop()
    missing = [n for n in _FAKEAVCELEB_NAMED + ("path",) if n not in names]
    if missing:
        raise MetadataError(f"{path}:1: header lacks columns {missing} (header: {rows[0]})")
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{lineno}"
        filename, folder = _fakeavceleb_file(names, row, where)
        field = {n: row[names.index(n)].strip() for n in _FAKEAVCELEB_NAMED}
        letter, kind = field["category"], field["type"]
        if letter not in FAKEAVCELEB_TYPES:
            raise MetadataError(f"{where}: unknown category {letter!r} (expected one of {sorted(FAKEAVCELEB_TYPES)})")
        if kind != FAKEAVCELEB_TYPES[letter]:
            raise MetadataError(f"{where}: category {letter!r} is {FAKEAVCELEB_TYPES[letter]}, but type is {kind!r}")
        parts = [p for p in folder.replace("\\", "/").split("/") if p]
        if kind not in parts:
            raise MetadataError(f"{where}: folder {folder!r} does not contain the type folder {kind!r}")
        rel = "/".join(parts[parts.index(kind):] + [filename.strip()])
        item = BenchmarkItem(
            id=rel,
            video=str(root / rel),
            label=REAL if letter == "A" else FAKE,
            category=kind,
            method=field["method"] or None,
        )
        _add(found, item, where)
    return _finish(found)


# ---- FaceForensics++ --------------------------------------------------------------------------


def read_ffpp_split(path: str | os.PathLike) -> list[tuple[str, str]]:
    """An official split file: a JSON list of ``[a, b]`` sequence-id pairs."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise MetadataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, list):
        raise MetadataError(f"{path}: expected a list of [a, b] pairs")
    pairs = []
    for index, pair in enumerate(data):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and x for x in pair)):
            raise MetadataError(f"{path}[{index}]: expected a pair of sequence ids, got {pair!r}")
        pairs.append((pair[0], pair[1]))
    return pairs


def _ffpp_originals_dir(root: Path, compression: str) -> Path:
    current = root / "original_sequences" / "youtube" / compression / "videos"
    older = root / "original_sequences" / compression / "videos"
    return older if not current.is_dir() and older.is_dir() else current


def read_ffpp(
    root: str | os.PathLike,
    split: str = "test",
    compression: str = "c23",
    methods: Sequence[str] = FFPP_DEFAULT_METHODS,
    splits_file: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
) -> BenchmarkSet:
    """FaceForensics++ originals and fakes of an official split (``split="all"``: every video
    of the folders). ``audio_dir`` holds ``<NNN>.wav`` per original sequence (see the module
    docstring); without it items have no ``audio``."""
    root = Path(root).resolve()
    if compression not in FFPP_COMPRESSIONS:
        raise ValueError(f"compression must be one of {FFPP_COMPRESSIONS}, got {compression!r}")
    unknown = [m for m in methods if m not in FFPP_METHODS]
    if unknown:
        raise ValueError(f"unknown FaceForensics++ methods {unknown}; choose from {FFPP_METHODS}")
    originals_dir = _ffpp_originals_dir(root, compression)
    found = BenchmarkSet("ffpp")
    if split == "all":
        reals = sorted(p.stem for p in originals_dir.glob("*.mp4"))
        fakes = {m: sorted(p.stem for p in (root / "manipulated_sequences" / m / compression / "videos").glob("*.mp4"))
                 for m in methods}
        source = str(root)
    else:
        split_path = Path(splits_file) if splits_file is not None else root / "splits" / f"{split}.json"
        if not split_path.is_file():
            raise MetadataError(
                f"{split_path}: no split file (the official dataset/splits/{split}.json of ondyari/FaceForensics; "
                "give its path, or use split 'all')"
            )
        pairs = read_ffpp_split(split_path)
        reals = list(dict.fromkeys(x for pair in pairs for x in pair))
        fakes = {m: [f"{a}_{b}" for a, b in pairs] + [f"{b}_{a}" for a, b in pairs] for m in methods}
        source = str(split_path)
        found.sources.append(source)
    audio_root = Path(audio_dir).resolve() if audio_dir is not None else None

    def audio_of(sequence: str) -> str | None:
        return None if audio_root is None else str(audio_root / f"{sequence}.wav")

    for name in reals:
        video = originals_dir / f"{name}.mp4"
        item = BenchmarkItem(id=video.relative_to(root).as_posix(), video=str(video), label=REAL,
                             category="real", method=None, split=split, audio=audio_of(name))
        _add(found, item, f"{source}: original {name}")
    for method, names in fakes.items():
        videos = root / "manipulated_sequences" / method / compression / "videos"
        for name in names:
            video = videos / f"{name}.mp4"
            target = name.split("_")[0]  # <target>_<source>: the target's frames, timing and audio
            item = BenchmarkItem(id=video.relative_to(root).as_posix(), video=str(video), label=FAKE,
                                 category=method, method=method, split=split, audio=audio_of(target))
            _add(found, item, f"{source}: {method} {name}")
    return _finish(found)


# ---- KoDF -------------------------------------------------------------------------------------


def _read_kodf_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    for encoding in _KODF_ENCODINGS:
        try:
            with open(path, encoding=encoding, newline="") as f:
                reader = csv.DictReader(f)
                rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
                fields = [name.strip() for name in reader.fieldnames or []]
            break
        except UnicodeDecodeError:
            continue
    else:
        raise MetadataError(f"{path}: not readable as {' or '.join(_KODF_ENCODINGS)}")
    missing = [c for c in columns if c not in fields]
    if missing:
        raise MetadataError(f"{path}:1: header lacks columns {missing} (header: {fields})")
    return rows


def _index_videos(folder: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = defaultdict(list)
    if folder.is_dir():
        for path in sorted(folder.rglob("*.mp4")):
            index[path.stem].append(path)
    return index


def read_kodf(
    root: str | os.PathLike, split: str = "validation", methods: Sequence[str] = KODF_DEFAULT_METHODS
) -> BenchmarkSet:
    """KoDF from the AI-Hub metadata CSVs of ``split`` (``training`` or ``validation``)."""
    root = Path(root).resolve()
    unknown = [m for m in methods if m not in KODF_METHODS]
    if unknown:
        raise ValueError(f"unknown KoDF methods {unknown}; choose from {KODF_METHODS}")
    real_csv = root / f"원본영상_{split}_메타데이터.csv"
    fake_csv = root / f"변조영상_{split}_메타데이터.csv"
    for path in (real_csv, fake_csv):
        if not path.is_file():
            raise MetadataError(f"{path}: KoDF metadata file not found (splits: {', '.join(KODF_SPLITS)})")
    found = BenchmarkSet("kodf", sources=[str(real_csv), str(fake_csv)])
    # Folder per method; audio-driven also as audio_driven (both spellings occur in lists).
    index: dict[str, dict[str, list[Path]]] = {}
    for folder in (KODF_REAL_FOLDER,) + KODF_METHODS:
        merged: dict[str, list[Path]] = defaultdict(list)
        for name in dict.fromkeys((folder, folder.replace("-", "_"))):
            for stem, paths in _index_videos(root / name).items():
                merged[stem] += paths
        index[folder] = merged

    def locate(folder: str, name: str, label: int, category: str, method: str | None, where: str) -> None:
        stem = Path(name).stem
        paths = index[folder].get(stem, [])
        if len(paths) > 1:
            found.problems.append(ItemProblem(f"{folder}/{stem}.mp4", where, "ambiguous",
                                              f"{len(paths)} files named {stem}.mp4 under {folder}/", label, category))
            return
        video = paths[0] if paths else root / folder / f"{stem}.mp4"
        item_id = video.relative_to(root).as_posix()
        _add(found, BenchmarkItem(item_id, str(video), label, category, method, split), where)

    for lineno, row in enumerate(_read_kodf_csv(real_csv, (_KODF_ID,)), start=2):
        where = f"{real_csv}:{lineno}"
        if not row[_KODF_ID]:
            raise MetadataError(f"{where}: empty {_KODF_ID}")
        locate(KODF_REAL_FOLDER, row[_KODF_ID], REAL, "original_videos", None, where)
    for lineno, row in enumerate(_read_kodf_csv(fake_csv, (_KODF_ID, _KODF_TARGET, _KODF_MODEL)), start=2):
        where = f"{fake_csv}:{lineno}"
        model = row[_KODF_MODEL].replace("_", "-")
        if model not in KODF_METHODS:
            raise MetadataError(f"{where}: unknown {_KODF_MODEL} {row[_KODF_MODEL]!r} (expected one of {KODF_METHODS})")
        if not row[_KODF_ID]:
            raise MetadataError(f"{where}: empty {_KODF_ID}")
        if model not in methods:
            found.problems.append(ItemProblem(
                f"{model}/{Path(row[_KODF_ID]).stem}.mp4", where, "excluded",
                f"{model} is not among the evaluated methods ({', '.join(methods)})", FAKE, model))
            continue
        locate(model, row[_KODF_ID], FAKE, model, model, where)
    return _finish(found)


# ---- AV-Deepfake1M ----------------------------------------------------------------------------


def _modify_type(entry: dict[str, Any], segments: tuple[Segment, ...], where: str) -> str:
    raw = entry.get("modify_type")
    if raw is None and "modify_video" in entry and "modify_audio" in entry:
        # LAV-DF-style flags (the SDK's Metadata derives them from modify_type).
        video, audio = _require(entry, "modify_video", bool, where), _require(entry, "modify_audio", bool, where)
        raw = {(False, False): "real", (True, False): "visual_modified", (False, True): "audio_modified",
               (True, True): "both_modified"}[(video, audio)]
    if raw is None:
        return "real" if not segments else "fake"
    kind = _MODIFY_SPELLINGS.get(raw) if isinstance(raw, str) else None
    if kind is None:
        raise MetadataError(f"{where}: unknown modify_type {raw!r} (expected one of {MODIFY_TYPES})")
    if (kind == "real") != (not segments):
        raise MetadataError(f"{where}: modify_type {raw!r} disagrees with fake_segments {list(segments)}")
    return kind


def read_avdeepfake1m(root: str | os.PathLike, split: str = "val") -> BenchmarkSet:
    """AV-Deepfake1M (or ++) ``split`` from ``<split>_metadata.json``, or, for an unlabelled
    test split, from ``<split>_files.txt``."""
    root = Path(root).resolve()
    metadata = root / f"{split}_metadata.json"
    files = root / f"{split}_files.txt"
    if metadata.is_file():
        found = BenchmarkSet("avdeepfake1m", sources=[str(metadata)])
        for index, entry in enumerate(_read_json_list(metadata)):
            where = f"{metadata}[{index}]"
            name = _require(entry, "file", str, where)
            where = f"{metadata}[{index}] ({name})"
            segments = parse_segments(_require(entry, "fake_segments", list, where), where)
            kind = _modify_type(entry, segments, where)
            item = BenchmarkItem(
                id=name,
                video=str(root / split / name),
                label=FAKE if segments else REAL,
                category=kind,
                method=entry.get("audio_model") if kind in ("audio_modified", "both_modified") else None,
                split=entry.get("split", split),
                fake_segments=segments,
            )
            _add(found, item, where)
        return _finish(found)
    if files.is_file():
        found = BenchmarkSet("avdeepfake1m", sources=[str(files)])
        for lineno, line in enumerate(files.read_text(encoding="utf-8").splitlines(), start=1):
            name = line.strip()
            if name:
                _add(found, BenchmarkItem(name, str(root / split / name), None, "unlabelled", split=split),
                     f"{files}:{lineno}")
        return _finish(found)
    raise MetadataError(f"{root}: neither {metadata.name} nor {files.name} found for split {split!r}")


# ---- LAV-DF -----------------------------------------------------------------------------------


def read_lavdf(root: str | os.PathLike, split: str = "test") -> BenchmarkSet:
    """LAV-DF entries of ``split`` from ``metadata.json`` (or ``metadata.min.json``)."""
    root = Path(root).resolve()
    metadata = root / "metadata.json"
    if not metadata.is_file():
        metadata = root / "metadata.min.json"
    if not metadata.is_file():
        raise MetadataError(f"{root}: no metadata.json or metadata.min.json")
    found = BenchmarkSet("lavdf", sources=[str(metadata)])
    for index, entry in enumerate(_read_json_list(metadata)):
        where = f"{metadata}[{index}]"
        name = _require(entry, "file", str, where)
        where = f"{metadata}[{index}] ({name})"
        entry_split = _require(entry, "split", str, where)
        if entry_split not in LAVDF_SPLITS:
            raise MetadataError(f"{where}: unknown split {entry_split!r} (expected one of {LAVDF_SPLITS})")
        if entry_split != split:
            continue
        segments = parse_segments(_require(entry, "fake_periods", list, where), where)
        if "n_fakes" in entry and _require(entry, "n_fakes", int, where) != len(segments):
            raise MetadataError(f"{where}: n_fakes is {entry['n_fakes']} but fake_periods has {len(segments)}")
        video_mod = _require(entry, "modify_video", bool, where)
        audio_mod = _require(entry, "modify_audio", bool, where)
        if (video_mod or audio_mod) == (not segments):
            raise MetadataError(f"{where}: modify_video/modify_audio disagree with fake_periods {list(segments)}")
        kind = {(False, False): "real", (True, False): "visual_modified", (False, True): "audio_modified",
                (True, True): "both_modified"}[(video_mod, audio_mod)]
        item = BenchmarkItem(id=name, video=str(root / name), label=FAKE if segments else REAL,
                             category=kind, split=entry_split, fake_segments=segments)
        _add(found, item, where)
    return _finish(found)


# ---- SpeechForensics lists --------------------------------------------------------------------


def read_speechforensics(
    list_path: str | os.PathLike, data_root: str | os.PathLike, category_rule: str = "auto"
) -> BenchmarkSet:
    """A SpeechForensics ``test_list.txt`` over its mouth-ROI folder (videos and wavs ready)."""
    found = BenchmarkSet("speechforensics", sources=[str(list_path)])
    for item in lists.read_speechforensics_list(list_path, str(data_root), category_rule):
        if item.label is None:
            raise MetadataError(f"{list_path}: {item.id!r} has no label")
        entry = BenchmarkItem(item.id, item.video, item.label, item.category or "unknown",
                              audio=item.audio, prepared=True)
        _add(found, entry, f"{list_path}: {item.id}")
    return _finish(found)


READERS: dict[str, Callable[..., BenchmarkSet]] = {
    "fakeavceleb": read_fakeavceleb,
    "ffpp": read_ffpp,
    "kodf": read_kodf,
    "avdeepfake1m": read_avdeepfake1m,
    "lavdf": read_lavdf,
    "speechforensics": read_speechforensics,
}
