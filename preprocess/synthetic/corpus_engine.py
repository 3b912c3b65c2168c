"""Generate a synthetic talking-face corpus: real clips for training, real + labelled fakes for testing
(the engine of ``sf-synthetic-corpus``, :mod:`.corpus`: :class:`CorpusJob` → :func:`generate`).

Every clip is a face photo (scikit-image's astronaut or a public-domain portrait, augmented)
whose lips and jaw follow the phonemes of a sentence spoken by espeak-ng, with small head
motion, encoded as H.264 + AAC mp4 at 25 fps (24 or 30 fps for a fifth each, rendered at that
rate: :mod:`.channel`). A fraction of the source clips
(``--recorded-fraction``) say a real recorded sentence instead (a shipped public-domain
LibriVox excerpt with aligned phones, :mod:`.recorded`); their metadata has ``"speech":
"recorded"`` and a ``recording`` entry naming the file, source and licence. ``--grammar grid``
makes every sentence a closed-vocabulary GRID sentence (:mod:`.grid`), fakes included, spoken by
espeak-ng only (the recordings do not fit the grammar). Layout under ``--out``::

    corpus.json                       generation settings (checked on resume)
    train/real/t00000.mp4 ...         real clips only
    train/train_list.txt              "<path> 1" per clip (SpeechForensics list format)
    train/train.csv, train/metadata.jsonl
    test/<category>/s00000.mp4 ...    for every source clip: real + every fake category
    test/test_list.txt                "<path> <label>", 1 = real, 0 = fake (offset_small is 1)
    test/test.csv                     path,label,category,source,window_start,window_end,offset_seconds
    test/metadata.jsonl               one JSON object per clip: text, voice, phoneme timings,
                                      face source and augmentation, fake parameters, hashes

Every source clip goes through one recording channel (:mod:`.channel`: H.264 quality, audio level
and noise, stored frame rate), the same for its real clip and all its fakes; its metadata has it under ``channel``.
Every clip's metadata names the true text of each stream: ``audio_text`` (what the audio says;
another sentence in ``dubbed`` clips, of which ``audio_cut_seconds`` may have been cut off by the
clip's end in free-grammar corpora, never in GRID ones) and ``mouth_text`` (what the lips say; another sentence in
``lipsync_other`` clips, the inserted sentence of a ``partial`` clip, whose mouth says it only
inside the window, and null for ``frozen_mouth`` / ``smeared_mouth``, whose lips say nothing
readable).

Fakes that change only the sound (``dubbed``, ``offset_*``) copy the real clip's encoded video
stream (the frames that rendering and encoding again would give) beside their own audio.

Paths in the lists are relative to the split folder. Every clip's metadata also sits beside it
(``<clip>.json``, written after the mp4), so a rerun skips finished clips and only renders
what is missing; lists and JSONL are rebuilt from the sidecars at the end. A given ``--seed``
gives the same clips whatever the order, the worker count or the interruptions (every clip's
random numbers derive from (seed, split, index) alone): the same sentences, voices, faces,
motion, frames and recording channels. One exception, outside this code: espeak-ng's voice
variants with breath noise (``en-us+f2``, ``en+f3``) draw that noise from a generator espeak-ng
seeds itself, so their waveforms (and ``audio_sha256``) are the same within one process but
differ slightly from one process to the next (measured 2026-12-02: 6 % of the signal's RMS).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sf_fairseq.data.rates import FPS
from sf_fairseq.resume import atomic_write_text

from .channel import Channel
from .clips import (GRAMMARS, ArrayHasher, ClipPlan, new_utterance, plan_real, render_frames, write_mp4,
                    write_mp4_with_video_of)
from .faces import FACE_SOURCES, augment
from .fakes import CATEGORIES, make_fake
from .recorded import RecordedUtterance, random_recorded_utterance
from .speech import make_sentence, random_voice
from .render import FaceRenderer

logger = logging.getLogger(__name__)

SPLITS = {"train": 1, "test": 2}
PREFIX = {"train": "t", "test": "s"}
SETTINGS_FILE = "corpus.json"
RECORDED_FRACTION = 0.2
# Random streams of a source clip beyond its categories' (0 .. len(CATEGORIES)): the recorded-speech
# choice is len(CATEGORIES) + 1 (see source_plan), the recording channel this one.
CHANNEL_STREAM = len(CATEGORIES) + 2
# Fakes whose lips say nothing readable (their metadata's mouth_text is null).
UNREADABLE_MOUTH = ("frozen_mouth", "smeared_mouth")

# sf-prepare's face detection interval (--detect-every) that suits these clips: one face that
# moves smoothly, which the tracker follows by its landmarks between detections. Against the
# default 10 (for real footage: cuts, faces coming and going) it preprocesses ~30% faster and
# moves the landmarks by ~0.2 px on average (30 clips, 2026-12-02).
DETECT_EVERY = 20

# What the same settings render: bump it when they would render other clips, so that a folder
# of an older version is refused rather than completed with clips of two kinds.
# 2: clips stored at 24 or 30 fps are filmed at that rate's instants (1: 25 fps frames converted).
# 3: dubbed GRID clips say a whole sentence (one was cut by the clip's end in about ten).
CORPUS_VERSION = 3


def clip_path(out: Path, split: str, category: str, index: int) -> Path:
    return out / split / category / f"{PREFIX[split]}{index:05d}.mp4"


def is_finished(path: Path) -> bool:
    return path.exists() and path.with_suffix(".json").exists()


def source_plan(seed: int, split: str, index: int, size: tuple[int, int], quick: bool,
                recorded_fraction: float = RECORDED_FRACTION, grammar: str = "free") -> ClipPlan:
    """The real clip number ``index`` of ``split`` (deterministic in its arguments). With
    probability ``recorded_fraction`` it says a recorded excerpt instead of espeak-ng speech;
    that choice has its own random stream, so the espeak-ng clips do not depend on it. GRID
    clips (``grammar="grid"``) are always espeak-ng speech."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    if grammar != "free":
        return plan_real(rng, size, new_utterance(rng, grammar=grammar), FACE_SOURCES)
    choice = np.random.default_rng([seed, SPLITS[split], index, len(CATEGORIES) + 1])
    if choice.random() < recorded_fraction:
        # Draw (and discard) the sentence and voice so the rest of the clip is the same.
        make_sentence(rng, max_words=8 if quick else 16), random_voice(rng)
        utterance = random_recorded_utterance(choice)
    else:
        utterance = new_utterance(rng, max_words=8 if quick else 16)
    return plan_real(rng, size, utterance, FACE_SOURCES)


def clip_metadata(plan: ClipPlan, rel: str, split: str, source: str, frames_sha: str,
                  grammar: str = "free") -> dict:
    u = plan.utterance
    speech = u.metadata()
    category = plan.meta["category"]
    return {
        "path": rel,
        "split": split,
        "source": source,
        **plan.meta,
        "n_frames": plan.n_frames,
        "duration": plan.n_frames / FPS,
        "size": list(plan.size),
        "text": u.text,
        "grammar": grammar,
        "audio_text": plan.meta.get("audio_text", u.text),
        "mouth_text": plan.meta.get("mouth_text", None if category in UNREADABLE_MOUTH else u.text),
        "speech": "recorded" if isinstance(u, RecordedUtterance) else "espeak-ng",
        **({"recording": speech["recording"]} if isinstance(u, RecordedUtterance) else {}),
        "voice": speech["voice"],
        "lead": round(plan.lead, 4),
        "phonemes": speech["phonemes"],
        "face": plan.augmentation.metadata(),
        "frames_sha256": frames_sha,
        "audio_sha256": ArrayHasher.audio(plan.audio),
    }


def shows_real_frames(plan: ClipPlan, real: ClipPlan) -> bool:
    """Whether ``plan`` (a fake of ``real``) renders the very frames of ``real``: it changed only
    the audio (``dubbed``, ``offset_*``), keeping the face, head motion, mouth and blur."""
    return all(getattr(plan, name) is getattr(real, name)
               for name in ("size", "augmentation", "head", "mouth", "blur"))


def generate_source(out: Path, split: str, index: int, seed: int, size: tuple[int, int],
                    quick: bool, categories: tuple[str, ...], recorded_fraction: float = RECORDED_FRACTION,
                    grammar: str = "free") -> int:
    """Render the real clip ``index`` of ``split`` and (test) its fakes; skip finished clips.
    Returns how many clips were written."""
    todo = [c for c in categories if not is_finished(clip_path(out, split, c, index))]
    if not todo:
        return 0
    real = source_plan(seed, split, index, size, quick, recorded_fraction, grammar)
    channel = Channel.random(np.random.default_rng([seed, SPLITS[split], index, CHANNEL_STREAM]))
    image, landmarks = augment(real.augmentation, size)
    renderer = FaceRenderer(image, landmarks)
    source = f"{PREFIX[split]}{index:05d}"
    for category in todo:
        stream = 1 + CATEGORIES.index(category)
        if category == "real":
            plan = real
        else:
            plan = make_fake(real, category, np.random.default_rng([seed, SPLITS[split], index, stream]), grammar)
        noise = np.random.default_rng([seed, SPLITS[split], index, CHANNEL_STREAM, stream])
        plan = plan.with_changes(audio=channel.apply_audio(plan.audio, noise))
        path = clip_path(out, split, category, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        real_path = clip_path(out, split, "real", index)
        if category != "real" and shows_real_frames(plan, real) and is_finished(real_path):
            # Only the sound differs: the real clip's encoded video, copied, is what rendering
            # and encoding the same frames again would give.
            write_mp4_with_video_of(path, real_path, plan.audio)
            frames_sha = json.loads(real_path.with_suffix(".json").read_text(encoding="utf-8"))["frames_sha256"]
        else:
            hasher = ArrayHasher()
            write_mp4(path, hasher.watch(render_frames(plan, renderer, channel.fps)), plan.audio, size,
                      crf=channel.crf, fps=channel.fps)
            frames_sha = hasher.frames.hexdigest()
        meta = {**clip_metadata(plan, path.relative_to(out / split).as_posix(), split, source,
                                frames_sha, grammar), "channel": channel.metadata()}
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta) + "\n")
    return len(todo)


def _run_job(job: tuple) -> int:
    return generate_source(*job)


def write_lists(out: Path, split: str, n: int, categories: tuple[str, ...]) -> int:
    """Rebuild ``<split>_list.txt``, ``<split>.csv`` and ``metadata.jsonl`` from the sidecars."""
    records = []
    for index in range(n):
        for category in categories:
            sidecar = clip_path(out, split, category, index).with_suffix(".json")
            records.append(json.loads(sidecar.read_text(encoding="utf-8")))
    root = out / split
    atomic_write_text(root / f"{split}_list.txt", "".join(f"{r['path']} {r['label']}\n" for r in records))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "category", "source", "window_start", "window_end", "offset_seconds"])
    for r in records:
        window = r.get("window_seconds", ["", ""])
        writer.writerow([r["path"], r["label"], r["category"], r["source"], *window, r.get("offset_seconds", "")])
    atomic_write_text(root / f"{split}.csv", buf.getvalue())
    atomic_write_text(root / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return len(records)


class CorpusError(ValueError):
    """Options out of range, or an output folder generated with other settings."""


def _check_settings(out: Path, settings: dict) -> None:
    path = out / SETTINGS_FILE
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        # Folders made before --recorded-fraction / --grammar existed hold espeak-ng speech
        # only, in free sentences.
        previous = {"version": old.get("version", 1), "seed": old.get("seed"), "size": old.get("size"),
                    "quick": old.get("quick"), "recorded_fraction": old.get("recorded_fraction", 0.0),
                    "grammar": old.get("grammar", "free")}
        if any(previous[k] != settings[k] for k in previous):
            raise CorpusError(
                f"{path}: this folder was generated with "
                f"{previous}, not { {k: settings[k] for k in previous} }; "
                "use another --out or the same settings"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


@dataclass(frozen=True)
class CorpusJob:
    """One corpus (the options of ``sf-synthetic-corpus``).

    Attributes:
        out: the output folder.
        n_train: real training clips; n_test: test source clips (each gives one real clip and
            one clip per fake category of ``categories``).
        size: frame size (width, height) in pixels, at least 128 each way.
        quick: short sentences (4-8 words).
        recorded_fraction: share of source clips saying a shipped recording (free grammar only).
        workers: parallel processes.
        grammar: ``"free"`` template sentences or ``"grid"`` closed-vocabulary GRID sentences
            (:mod:`.grid`; espeak-ng speech only: ``recorded_fraction`` is taken as 0).
    """

    out: str | os.PathLike
    n_train: int = 100
    n_test: int = 20
    seed: int = 0
    size: tuple[int, int] = (320, 320)
    quick: bool = False
    categories: tuple[str, ...] = CATEGORIES
    recorded_fraction: float = RECORDED_FRACTION
    workers: int = 1
    grammar: str = "free"


@dataclass(frozen=True)
class CorpusSummary:
    """The clips listed in each split's lists after :func:`generate`."""

    out: Path
    n_train: int
    n_test: int


def generate(job: CorpusJob) -> CorpusSummary:
    """Render the clips of ``job`` that are not finished yet, then rebuild the lists.

    Raises:
        CorpusError: options out of range, or ``out`` generated with another seed, size,
            quick setting, recorded fraction or grammar.
    """
    if job.n_train < 0 or job.n_test < 0 or job.workers < 1:
        raise CorpusError("--n-train and --n-test must be >= 0 and --workers >= 1")
    if not 0.0 <= job.recorded_fraction <= 1.0:
        raise CorpusError("--recorded-fraction must be between 0 and 1")
    if min(job.size) < 128:
        raise CorpusError("--size must be at least 128 pixels each way (dlib needs the face)")
    if job.grammar not in GRAMMARS:
        raise CorpusError(f"--grammar must be one of {', '.join(GRAMMARS)}, not {job.grammar!r}")
    # The recordings say free sentences: a GRID corpus is espeak-ng speech only.
    fraction = job.recorded_fraction if job.grammar == "free" else 0.0
    out = Path(job.out)
    size = (int(job.size[0]), int(job.size[1]))
    categories = tuple(c for c in CATEGORIES if c in job.categories)
    _check_settings(out, {"version": CORPUS_VERSION, "seed": job.seed, "size": list(size), "quick": job.quick,
                          "recorded_fraction": fraction, "grammar": job.grammar,
                          "n_train": job.n_train, "n_test": job.n_test, "categories": list(categories)})
    jobs = [(out, "train", i, job.seed, size, job.quick, ("real",), fraction, job.grammar)
            for i in range(job.n_train)]
    jobs += [(out, "test", i, job.seed, size, job.quick, categories, fraction, job.grammar)
             for i in range(job.n_test)]
    total = job.n_train + job.n_test * len(categories)
    done = sum(is_finished(clip_path(out, j[1], c, j[2])) for j in jobs for c in j[6])
    with tqdm(total=total, initial=done, unit="clip", desc="synthetic clips") as bar:
        if job.workers == 1:
            for source in jobs:
                bar.update(_run_job(source))
        else:
            with multiprocessing.get_context("spawn").Pool(job.workers) as pool:
                for written in pool.imap_unordered(_run_job, jobs):
                    bar.update(written)
    n_train = write_lists(out, "train", job.n_train, ("real",)) if job.n_train else 0
    n_test = write_lists(out, "test", job.n_test, categories) if job.n_test else 0
    logger.info("%d training and %d test clips in %s", n_train, n_test, out)
    return CorpusSummary(out, n_train, n_test)
