"""The demo's lip-reading stage: do the lips and the audio say the same sentence?

A pretrained AV-HuBERT (the demo's, or any ``av_hubert`` checkpoint) is fine-tuned as a
sequence-to-sequence recogniser on a closed-vocabulary GRID corpus, then reads every test clip
twice: from the lips alone and from the audio alone. On real clips both streams say the same
sentence; a dubbed clip's audio and a lip-synced clip's mouth say another one, so the two
transcripts disagree. :func:`run` does, under ``<work_dir>/lipreading/``:

1. ``corpus``     GRID clips from the synthetic generator (espeak-ng voices): real training clips;
                  test clips real, ``dubbed`` and ``lipsync_other`` from the same sources
                  (:func:`sf_fairseq.preprocess.synthetic.corpus_engine.generate`, ``grammar="grid"``);
2. ``prepare``    the real preprocessing: dlib landmarks, mouth ROIs, wavs, manifests
                  (:func:`sf_fairseq.preprocess.prepare_engine.run`);
3. ``targets``    ``train.wrd``, a word-level SentencePiece model and ``dict.wrd.txt`` (the
                  ``sf-build-transcript-targets`` function, :func:`.transcript_targets.build_targets`);
4. ``finetune``   ``fairseq-hydra-train`` with ``config/finetune/tiny_cpu_grid.yaml``:
                  ``av_hubert_seq2seq`` on both streams, one stream dropped in every batch
                  (``model.modality_dropout``), so one model reads either stream alone;
5. ``transcribe`` lips-only and audio-only transcripts of every test clip (beam search,
                  :class:`.transcriber.Transcriber`).

Then it writes ``report.json``: word error rate of each stream against that stream's own truth
(the lips against the sentence the mouth says, the audio against the sentence the audio says),
per category; each clip's lips-vs-audio word disagreement; and the AUC of that disagreement for
real against dubbed and real against lip-synced clips (higher disagreement = fake).
:func:`markdown_lines` turns the report into the demo report's section.

The steps run as :class:`sf_fairseq.eval.stages.Stages` (markers in ``steps/``): each records
its settings and those of every step before it; a rerun reuses a finished step with the same
settings and redoes it, after clearing its outputs, with other ones.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sf_fairseq import paths, resume
from sf_fairseq.eval.stages import Stages
from sf_fairseq.preprocess.prepare_engine import PrepareOptions
from sf_fairseq.preprocess.synthetic.corpus_engine import CORPUS_VERSION

logger = logging.getLogger(__name__)

STAGE_DIR = "lipreading"
TEST_CATEGORIES = ("real", "dubbed", "lipsync_other")
FAKE_CATEGORIES = TEST_CATEGORIES[1:]
STREAMS = {"lips": "video", "audio": "audio"}  # report name -> transcriber stream
FINETUNE_CONFIG = "tiny_cpu_grid"
# One target piece per GRID word: six tokens a sentence, far easier to learn than letters.
PIECE_MODEL = "word"


class LipreadingError(RuntimeError):
    """A step failed (the message names the step and, for training, its log)."""


@dataclass(frozen=True)
class LipreadingJob:
    """One lip-reading stage.

    Attributes:
        work_dir: the stage writes under ``<work_dir>/lipreading/``.
        pretrained: a pretrained ``av_hubert`` checkpoint (the demo's ``model_2/checkpoint_last.pt``).
        n_train: real GRID training clips.
        n_test: test sources; each gives a real, a dubbed and a lip-synced clip.
        updates: fine-tuning updates.
        freeze_updates: first updates that train the decoder only (cheaper: no backward pass
            through the encoder).
        seed: seed of the corpus and of training.
        workers: processes for generating and preprocessing clips.
        size: frame size of the generated clips (width, height).
        crop_size: lip crop of the 96x96 mouth ROIs (the pretrained model's).
        max_tokens: frames per training batch.
        lr: peak learning rate (tri-stage: 10% warm-up, 40% hold, 50% decay).
        modality_dropout: share of training batches with one stream dropped.
        audio_dropout: share of those that drop the audio (the rest drop the lips).
        vocab_size: upper bound of the word-level SentencePiece vocabulary (GRID has 51 words).
        beam: beam size of the transcription.
        n_examples: example clips per category in the markdown table.
        detect_every: face detection interval of the preprocessing (``sf-prepare
            --detect-every``). Not the main demo's 20: on these 224-pixel GRID clips it split
            the face of 2 of 160 training clips into two tracks (2026-12-02), and a track that
            holds part of a clip has no transcript of its own.
    """

    work_dir: str | os.PathLike
    pretrained: str | os.PathLike
    n_train: int = 160
    n_test: int = 20
    updates: int = 300
    freeze_updates: int = 100
    seed: int = 0
    workers: int = 2
    size: tuple[int, int] = (224, 224)
    crop_size: int = 48
    max_tokens: int = 1000
    lr: float = 0.002
    modality_dropout: float = 1.0
    audio_dropout: float = 0.5
    vocab_size: int = 100
    beam: int = 5
    n_examples: int = 2
    detect_every: int = PrepareOptions.detect_every

    @classmethod
    def quick(cls, work_dir: str | os.PathLike, pretrained: str | os.PathLike, seed: int = 0,
              workers: int = 2) -> "LipreadingJob":
        """A run of about a minute (the quick demo's): the pipeline, not a model that reads."""
        return cls(work_dir, pretrained, n_train=8, n_test=2, updates=10, freeze_updates=5, seed=seed,
                   workers=workers, beam=2)


@dataclass(frozen=True)
class ClipReading:
    """One test clip: its truths and both transcripts."""

    id: str
    category: str
    mouth_text: str
    audio_text: str
    lips: str
    audio: str

    @property
    def disagreement(self) -> float:
        """Word edit distance between the two transcripts over the longer one (0 = same)."""
        from sf_fairseq.eval.transcriber import disagreement

        return disagreement(self.lips.split(), self.audio.split())


@dataclass(frozen=True)
class LipreadingResult:
    """What :func:`run` measured (all of it is also in ``report.json``).

    Attributes:
        report_path: ``<work_dir>/lipreading/report.json``.
        checkpoint: the fine-tuned model.
        wer: ``{category: {"lips": WER, "audio": WER}}`` (fractions), each stream against its own truth.
        mean_disagreement: ``{category: mean lips-vs-audio word disagreement}``.
        auc: ``{fake category: AUC}`` of the disagreement, real clips against that category.
        auc_ci95: ``{fake category: [low, high]}`` stratified bootstrap intervals of ``auc``.
        n_clips: transcribed test clips per category.
        seconds: ``{step: seconds}`` (as recorded when the step ran).
    """

    report_path: Path
    checkpoint: Path
    wer: dict[str, dict[str, float]]
    mean_disagreement: dict[str, float]
    auc: dict[str, float]
    auc_ci95: dict[str, list[float]]
    n_clips: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


# ---- figures ----------------------------------------------------------------------------------


def stream_wers(readings: list[ClipReading]) -> dict[str, dict[str, float]]:
    """Word error rate of the lips against the mouth's text and of the audio against the audio's
    text, per category (fractions; edits summed over the category's clips)."""
    from sf_fairseq.eval.transcriber import word_error_rate

    out: dict[str, dict[str, float]] = {}
    for category in _categories(readings):
        group = [r for r in readings if r.category == category]
        out[category] = {"lips": word_error_rate([r.mouth_text for r in group], [r.lips for r in group]),
                         "audio": word_error_rate([r.audio_text for r in group], [r.audio for r in group])}
    return out


def disagreement_aucs(readings: list[ClipReading], n_boot: int = 1000,
                      seed: int = 0) -> tuple[dict[str, float], dict[str, list[float]]]:
    """AUC (and 95% bootstrap interval) of the lips-vs-audio disagreement separating real clips
    from each fake category: the probability that a real clip disagrees less than a fake one."""
    from sf_fairseq.eval.metrics import bootstrap_intervals, roc_auc

    real = [-r.disagreement for r in readings if r.category == "real"]
    aucs, intervals = {}, {}
    for category in _categories(readings):
        fake = [-r.disagreement for r in readings if r.category == category]
        if category == "real" or not real or not fake:
            continue
        labels, scores = np.array([1] * len(real) + [0] * len(fake)), np.array(real + fake)
        aucs[category] = roc_auc(labels, scores)
        intervals[category] = list(bootstrap_intervals(labels, scores, n_boot=n_boot, seed=seed)["auc"])
    return aucs, intervals


def _categories(readings: list[ClipReading]) -> list[str]:
    present = {r.category for r in readings}
    return [c for c in TEST_CATEGORIES if c in present] + sorted(present - set(TEST_CATEGORIES))


def examples(readings: list[ClipReading], per_category: int = 2) -> list[ClipReading]:
    """The first ``per_category`` clips of each category, in id order."""
    out = []
    for category in _categories(readings):
        out += sorted((r for r in readings if r.category == category), key=lambda r: r.id)[:per_category]
    return out


def build_report(readings: list[ClipReading], settings: dict[str, Any], seconds: dict[str, float],
                 training: dict[str, float], n_examples: int = 2, seed: int = 0) -> dict[str, Any]:
    """The content of ``report.json`` (JSON-ready)."""
    aucs, intervals = disagreement_aucs(readings, seed=seed)
    categories = _categories(readings)
    return {
        "settings": settings,
        "seconds": seconds,
        "training": training,
        "n_clips": {c: sum(r.category == c for r in readings) for c in categories},
        "wer": stream_wers(readings),
        "mean_disagreement": {c: float(np.mean([r.disagreement for r in readings if r.category == c]))
                              for c in categories},
        "auc": aucs,
        "auc_ci95": intervals,
        "examples": [r.id for r in examples(readings, n_examples)],
        "clips": [{**asdict(r), "disagreement": r.disagreement} for r in readings],
    }


def markdown_lines(report: dict[str, Any]) -> list[str]:
    """The demo report's lip-reading section (``## Lip reading``) from a ``report.json``."""
    settings, seconds = report["settings"], report.get("seconds", {})
    lines = [
        "## Lip reading (GRID sentences: lips and audio transcribed separately)",
        "",
        f"`av_hubert_seq2seq` fine-tuned for {settings['updates']} updates from the pretrained model on "
        f"{settings['n_train']} real GRID clips (command colour preposition letter digit adverb, espeak-ng "
        f"voices), both streams with one dropped in every batch; {settings['n_test']} test sources. "
        "WER is each stream's transcript against what that stream says (the mouth's sentence for the "
        "lips, the audio's for the audio); disagreement is the word edit distance between the two "
        "transcripts over the longer one; its AUC is real clips against each fake category "
        f"(more disagreement = fake). Stage time {sum(seconds.values()):.0f} s "
        f"({', '.join(f'{k} {v:.0f}' for k, v in seconds.items())}).",
        "",
        "| clips | n | lips WER | audio WER | mean disagreement | disagreement AUC vs real [95% interval] |",
        "|---|---|---|---|---|---|",
    ]
    for category, n in report["n_clips"].items():
        wer = report["wer"][category]
        auc = report["auc"].get(category)
        interval = report["auc_ci95"].get(category)
        auc_text = "" if auc is None else f"{auc:.3f} [{interval[0]:.2f}, {interval[1]:.2f}]"
        lines.append(f"| {category} | {n} | {wer['lips']:.1%} | {wer['audio']:.1%} | "
                     f"{report['mean_disagreement'][category]:.2f} | {auc_text} |")
    clips = {c["id"]: c for c in report["clips"]}
    lines += [
        "",
        "| clip | category | mouth says | audio says | lips transcript | audio transcript |",
        "|---|---|---|---|---|---|",
    ]
    for clip_id in report["examples"]:
        c = clips[clip_id]
        lines.append(f"| {clip_id} | {c['category']} | {c['mouth_text']} | {c['audio_text']} | "
                     f"{c['lips'] or '(empty)'} | {c['audio'] or '(empty)'} |")
    return lines


# ---- steps ------------------------------------------------------------------------------------


def _make_corpus(job: LipreadingJob, corpus_dir: Path) -> None:
    from sf_fairseq.preprocess.synthetic import corpus_engine

    try:
        corpus_engine.generate(corpus_engine.CorpusJob(
            corpus_dir, n_train=job.n_train, n_test=job.n_test, seed=job.seed, size=job.size,
            categories=TEST_CATEGORIES, workers=job.workers, grammar="grid"))
    except corpus_engine.CorpusError as err:
        raise LipreadingError(f"lip-reading corpus: {err}") from err


def _prepare(job: LipreadingJob, corpus_dir: Path, roi_dir: Path) -> None:
    from sf_fairseq.preprocess import prepare_engine

    for split in ("train", "test"):
        root = corpus_dir / split
        videos = [line.split()[0] for line in (root / f"{split}_list.txt").read_text(encoding="utf-8").splitlines()]
        list_path = roi_dir / f"{split}_videos.txt"
        list_path.parent.mkdir(parents=True, exist_ok=True)
        resume.atomic_write_text(list_path, "".join(f"{v}\n" for v in videos))
        try:
            done = prepare_engine.run(prepare_engine.PrepareJob(
                list_path, roi_dir / split, root=root, split=split, workers=job.workers,
                options=prepare_engine.PrepareOptions(detect_every=job.detect_every)))
        except prepare_engine.PrepareError as err:
            raise LipreadingError(f"lip-reading preprocessing: {err}") from err
        if done.exit_status not in (0, 1):  # 1: some clips not usable, the rest are listed
            raise LipreadingError(f"lip-reading preprocessing of {split} failed (exit status {done.exit_status})")
        dropped = whole_clips_only(roi_dir / split / f"{split}.tsv")
        if dropped:
            logger.warning("lip-reading %s: left out %d clips whose face the tracker split into several tracks "
                           "(each holds part of the sentence): %s", split, len(dropped), ", ".join(dropped))


def whole_clips_only(manifest: Path) -> list[str]:
    """Drop from ``manifest`` the rows of clips whose face was followed as several tracks (one
    face lost and found again: each track holds part of the sentence, which has no transcript
    of its own); returns the clips dropped."""
    from sf_fairseq.preprocess.prepare_engine import TRACK_SEPARATOR

    root, *rows = manifest.read_text(encoding="utf-8").splitlines()
    split = [row for row in rows if TRACK_SEPARATOR in row.split("\t", 1)[0]]
    if split:
        kept = [row for row in rows if row not in split]
        resume.atomic_write_text(manifest, "".join(f"{line}\n" for line in [root, *kept]))
    return sorted({row.split("\t", 1)[0].split(TRACK_SEPARATOR)[0] for row in split})


def _truths(corpus_dir: Path, split: str) -> dict[str, dict[str, Any]]:
    """Metadata of each clip of ``split`` by manifest id (its path without the extension)."""
    lines = (corpus_dir / split / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    return {os.path.splitext(m["path"])[0]: m for m in map(json.loads, lines)}


def _targets(job: LipreadingJob, corpus_dir: Path, roi_dir: Path, targets_dir: Path) -> None:
    from sf_fairseq.preprocess.transcript_targets import build_targets

    targets_dir.mkdir(parents=True, exist_ok=True)
    transcripts = targets_dir / "train_transcripts.txt"
    resume.atomic_write_text(transcripts, "".join(f"{clip_id}\t{meta['mouth_text']}\n"
                                                  for clip_id, meta in _truths(corpus_dir, "train").items()))
    build_targets(roi_dir / "train", transcripts, ["train"], targets_dir, vocab_size=job.vocab_size,
                  hard_vocab_limit=False, model_type=PIECE_MODEL)


def _finetune(job: LipreadingJob, roi_dir: Path, targets_dir: Path, model_dir: Path, log_path: Path) -> None:
    warmup, hold = max(1, job.updates // 10), job.updates * 4 // 10
    command = [
        str(Path(sys.executable).with_name("fairseq-hydra-train")),
        "--config-dir", str(paths.config_dir("finetune")), "--config-name", FINETUNE_CONFIG,
        f"task.data={roi_dir / 'train'}", f"task.label_dir={targets_dir}",
        f"task.tokenizer_bpe_model={targets_dir / f'spm_{PIECE_MODEL}{job.vocab_size}.model'}",
        f"model.w2v_path={Path(job.pretrained).resolve()}", f"common.user_dir={paths.user_dir()}",
        f"checkpoint.save_dir={model_dir}", f"common.seed={job.seed}", f"task.image_crop_size={job.crop_size}",
        f"dataset.max_tokens={job.max_tokens}", f"optimization.max_update={job.updates}", f"optimization.lr=[{job.lr}]",
        f"lr_scheduler.warmup_steps={warmup}", f"lr_scheduler.hold_steps={hold}",
        f"lr_scheduler.decay_steps={job.updates - warmup - hold}",
        f"model.modality_dropout={job.modality_dropout}", f"model.audio_dropout={job.audio_dropout}",
        f"model.freeze_finetune_updates={job.freeze_updates}",
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("[lipreading finetune] %d updates; log: %s", job.updates, log_path)
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    finished = "done training" in log_path.read_text(encoding="utf-8", errors="replace")
    if not finished or not (model_dir / "checkpoint_last.pt").is_file():
        raise LipreadingError(f"lip-reading fine-tuning failed (exit status {code}); see {log_path}")
    if code != 0:
        # Seen once on a loaded host: glibc's "FATAL: exception not rethrown" abort while the
        # interpreter exits, after training finished and the checkpoint was saved.
        logger.warning("fairseq-hydra-train exited with status %d after it finished training and saved "
                       "%s; using that checkpoint (see %s)", code, model_dir / "checkpoint_last.pt", log_path)


def training_figures(log_path: Path) -> dict[str, float]:
    """The last logged training loss and token accuracy (%) of a fairseq log (``loss 4.2 |``, or
    ``loss=4.2`` in other log formats; empty if none)."""
    text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.is_file() else ""
    out = {}
    for name in ("loss", "accuracy"):
        values = re.findall(rf"\b{name}[ =]([0-9.]+)", text)
        if values:
            out[name] = float(values[-1])
    return out


def _transcribe(job: LipreadingJob, checkpoint: Path, roi_dir: Path, out_path: Path) -> None:
    from sf_fairseq.eval.transcriber import DecodeSettings, Transcriber, transcribe_manifest

    transcriber = Transcriber.from_checkpoint(checkpoint, DecodeSettings(beam=job.beam))
    records = transcribe_manifest(transcriber, roi_dir / "test" / "test.tsv", list(STREAMS.values()))
    resume.atomic_write_text(out_path, "".join(json.dumps(r) + "\n" for r in records))


def read_readings(transcripts_path: Path, corpus_dir: Path) -> list[ClipReading]:
    """Transcripts of the test clips joined with their truths (clips that preprocessing left
    out are not in the transcripts)."""
    truths = _truths(corpus_dir, "test")
    readings = []
    for line in transcripts_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        meta = truths[record["id"]]
        readings.append(ClipReading(record["id"], meta["category"], meta["mouth_text"], meta["audio_text"],
                                    lips=record[STREAMS["lips"]], audio=record[STREAMS["audio"]]))
    return readings


def run(job: LipreadingJob) -> LipreadingResult:
    """Run (or resume) every step and write ``report.json``; see the module docstring.

    Raises:
        LipreadingError: a step failed.
        sf_fairseq.resume.RunLocked: another process is running the stage in the same folder.
    """
    stage_dir = Path(job.work_dir) / STAGE_DIR
    corpus_dir, roi_dir, targets_dir = stage_dir / "corpus", stage_dir / "roi", stage_dir / "targets"
    model_dir, transcripts_path = stage_dir / "model", stage_dir / "transcripts.jsonl"
    checkpoint = model_dir / "checkpoint_last.pt"
    stage_dir.mkdir(parents=True, exist_ok=True)
    with resume.exclusive_output(stage_dir / ".lock", f"lip-reading stage in {stage_dir}", stage_dir):
        steps, seconds = Stages(stage_dir / "steps", label="lipreading"), {}

        def step(name: str, settings: dict[str, Any], action: Callable[[], None], outputs: tuple[Path, ...]) -> None:
            # Each step's settings under its own name: the steps' keys may not collide.
            seconds[name] = steps.run(name, {name: settings}, action, outputs)["seconds"]

        step("corpus", {"version": CORPUS_VERSION, "n_train": job.n_train, "n_test": job.n_test,
                        "seed": job.seed, "size": list(job.size)},
             lambda: _make_corpus(job, corpus_dir), (corpus_dir,))
        step("prepare", {"detect_every": job.detect_every, "whole_clips_only": True},
             lambda: _prepare(job, corpus_dir, roi_dir), (roi_dir,))
        step("targets", {"vocab_size": job.vocab_size, "pieces": PIECE_MODEL},
             lambda: _targets(job, corpus_dir, roi_dir, targets_dir), (targets_dir,))
        step("finetune", {"pretrained_sha256": resume.file_sha256(job.pretrained), "updates": job.updates,
                          "freeze_updates": job.freeze_updates, "crop_size": job.crop_size,
                          "max_tokens": job.max_tokens, "lr": job.lr,
                          "modality_dropout": job.modality_dropout, "audio_dropout": job.audio_dropout},
             lambda: _finetune(job, roi_dir, targets_dir, model_dir, stage_dir / "logs" / "finetune.log"),
             (model_dir,))
        step("transcribe", {"beam": job.beam}, lambda: _transcribe(job, checkpoint, roi_dir, transcripts_path), ())
        readings = read_readings(transcripts_path, corpus_dir)
        settings = {**asdict(job), "work_dir": str(job.work_dir), "pretrained": str(job.pretrained),
                    "size": list(job.size)}
        report = build_report(readings, settings, seconds, training_figures(stage_dir / "logs" / "finetune.log"),
                              job.n_examples, job.seed)
        report_path = stage_dir / "report.json"
        resume.atomic_write_json(report_path, report)
    logger.info("[lipreading] WER %s; disagreement AUC %s", report["wer"], report["auc"])
    return LipreadingResult(report_path, checkpoint, report["wer"], report["mean_disagreement"], report["auc"],
                            report["auc_ci95"], report["n_clips"], seconds)
