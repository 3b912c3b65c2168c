"""The embedded demo: the whole method, offline, on a synthetic talking-face corpus.

Stages (each reused on rerun when its settings are unchanged; ``<work>/stages/<name>.json``
records what it was made with, including the content hash of the checkpoint a stage reads and
the score rule options, so nothing is reused across a changed model or score setting):

1. ``corpus``     real training clips, and test clips: real + every fake category
                  (:func:`sf_fairseq.preprocess.synthetic.corpus_engine.generate`);
2. ``prepare``    the real preprocessing: dlib landmarks, mouth ROIs, wavs, manifests
                  (:func:`sf_fairseq.preprocess.prepare_engine.run`);
3. ``labels_1``   iteration 1 targets: MFCC k-means at 100 Hz
                  (:class:`sf_fairseq.preprocess.iteration_engine.Iteration`);
4. ``pretrain_1`` ``fairseq-hydra-train`` with the tiny config and the user dir;
5. ``labels_2``   iteration 2 targets: k-means of the iteration-1 model's features at 25 Hz;
6. ``pretrain_2`` continue pretraining from iteration 1 on the new targets;
7. ``score``      the batch scorer on the test set, with the metrics report
                  (:func:`sf_fairseq.eval.batch_engine.score_list`);
8. ``localisation`` where the ``partial`` fakes lie: segment proposals against the corpus's
                  ground-truth windows (:func:`sf_fairseq.eval.partial_localisation.localise`);
9. ``robustness`` the perturbation grid (:func:`sf_fairseq.eval.robustness_engine.run_grid`) on
                  the real and dubbed clips of the first ``robustness_sources`` test sources,
                  perturbing the mouth ROIs (the fast option);
10. ``lipreading`` (on by default in the full demo, ``--no-lipreading`` skips it; off in
                  ``--quick`` unless ``--lipreading``): the iteration-2 model fine-tuned as a
                  lip reader on GRID sentences, which reads the lips and the audio of GRID test
                  clips separately (:func:`sf_fairseq.eval.lipreading.run`): word error rate
                  per stream, and how well the lips-vs-audio disagreement separates real clips
                  from dubbed and lip-synced ones.

Each stage is called as a function with typed arguments; only the pretraining runs as a
separate process (``fairseq-hydra-train``).

Both pretraining iterations use the ``av_hubert_alignment`` criterion (masked prediction plus the
frame-wise audio-visual alignment term of SpeechForensics' representation stage) with the options
of :meth:`DemoSettings.alignment_options`: negatives from the frame's own clip, video and audio
excerpts at a random shift (so a frame's position does not give its partner away) and the
clip-level term (own audio against the other clips' audio). Each of these raised the dubbed AUC
of the full demo; the README lists the runs. Only real clips are ever used for training.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from sf_fairseq import paths, resume
from sf_fairseq._logging import command_logging
from sf_fairseq.eval.metrics import bootstrap_intervals, roc_auc
from sf_fairseq.eval.pipeline import ScoreOptions
from sf_fairseq.eval.results import OK, latest_records
from sf_fairseq.eval.scorer_settings import ScorerSettings
from sf_fairseq.eval.stages import Stages
from sf_fairseq.records import ScoreRecord, read_prepare_record

logger = logging.getLogger(__name__)

# The perturbation grid scores real clips against dubbed ones (the paper's main fake type).
ROBUSTNESS_CATEGORIES = ("real", "dubbed")
VALID_CLIPS = 2
# The 96-pixel ROIs are below the reference's 256-pixel block threshold.
ROBUSTNESS_BLOCK_RULE = "scaled"
# The score rule of the score and robustness stages: given to both and part of their stage
# keys, so that a change of a default reruns them.
SCORE_OPTIONS = ScoreOptions()


# The demo's figures are float32 figures on every host (``auto`` would pick bf16 where it is native).
SCORE_PRECISION = "fp32"


def scorer_settings(checkpoint: Path) -> ScorerSettings:
    """The scorer of the score and robustness stages: ``checkpoint`` on CPU with the demo's
    score rule and precision."""
    return ScorerSettings(str(checkpoint), cpu=True, precision=SCORE_PRECISION, max_offset=SCORE_OPTIONS.max_offset,
                          max_seconds=SCORE_OPTIONS.max_seconds or 0)


def scoring_settings(checkpoint: Path) -> dict:
    """Stage key of a stage that scores with ``checkpoint``: the checkpoint's content (not its
    path: a stage rerun upstream may rewrite it) and every setting of :func:`scorer_settings`."""
    return {"checkpoint_sha256": resume.file_sha256(checkpoint), "layer": None, "precision": SCORE_PRECISION,
            "max_offset": SCORE_OPTIONS.max_offset, "max_seconds": SCORE_OPTIONS.max_seconds}


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (``--quick`` picks the small ones)."""

    seed: int
    n_train: int
    n_test: int
    n_clusters_1: int
    n_clusters_2: int
    updates_1: int
    updates_2: int
    max_tokens: int
    crop_size: int
    resnet_width: int
    substitute_video_features: bool
    alignment_negatives: str
    alignment_weight: float
    alignment_max_shift: int
    alignment_temperature: float
    alignment_clip_weight: float
    robustness_types: str
    robustness_levels: str
    robustness_sources: int
    quick: bool

    def alignment_options(self) -> dict[str, object]:
        """The ``av_hubert_alignment`` options (``alignment_*`` fields) both iterations train with."""
        return {name: value for name, value in asdict(self).items() if name.startswith("alignment_")}

    @classmethod
    def full(cls, seed: int) -> "DemoSettings":
        # The full corpus's clips are long: a 400-frame batch held ~2 of them (one negative for the
        # clip-level term), an 800-frame batch holds ~7. Fewer, larger updates (docs/demo-results.md:
        # dubbed AUC 0.947-0.967 with 300 + 300 updates of 400 frames, 0.970 and 0.980 with 220 +
        # 180 of 800). The shared lip ResNet pass pays for more updates: 220 + 180 with it gave
        # 0.953, these 0.982.
        return cls(seed, n_train=300, n_test=64, n_clusters_1=50, n_clusters_2=50,
                   updates_1=300, updates_2=240, max_tokens=800, crop_size=48, resnet_width=16,
                   substitute_video_features=True,
                   alignment_negatives="clip", alignment_weight=1.0, alignment_max_shift=12,
                   alignment_temperature=0.3, alignment_clip_weight=2.0,
                   robustness_types="video", robustness_levels="1,5", robustness_sources=16, quick=False)

    @classmethod
    def quick_run(cls, seed: int) -> "DemoSettings":
        # Sized to separate dubbed clips within five minutes (docs/demo-results.md: dubbed AUC
        # 0.95, 0.89, 0.96 over seeds 0-2): 8 clips and 30 + 30 updates did not (0.78, 0.56, 0.44).
        # 800-frame batches hold ~8 short clips, so the clip-level term has ~7 negatives.
        return cls(seed, n_train=96, n_test=16, n_clusters_1=20, n_clusters_2=20,
                   updates_1=200, updates_2=60, max_tokens=800, crop_size=48, resnet_width=16,
                   substitute_video_features=True,
                   alignment_negatives="clip", alignment_weight=1.0, alignment_max_shift=12,
                   alignment_temperature=0.3, alignment_clip_weight=2.0,
                   robustness_types="gb,jpeg", robustness_levels="5", robustness_sources=3, quick=True)


class StageFailed(RuntimeError):
    pass


def _check_exit(name: str, code: int, allow_partial: bool = False) -> None:
    if code != 0 and not (allow_partial and code == 1):
        raise StageFailed(f"stage {name} failed (exit status {code})")


def _hydra_train(save_dir: Path, log_path: Path, max_update: int, overrides: list[str]) -> None:
    """Run ``fairseq-hydra-train`` with the tiny config, showing a progress bar of updates."""
    executable = Path(sys.executable).with_name("fairseq-hydra-train")
    command = [
        str(executable), "--config-dir", str(paths.config_dir("pretrain")), "--config-name", "tiny_cpu",
        f"common.user_dir={paths.user_dir()}", f"checkpoint.save_dir={save_dir}",
        f"optimization.max_update={max_update}", "common.log_interval=5",
        "checkpoint.save_interval_updates=0", *overrides,
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(r"num_updates=(\d+)")
    with open(log_path, "w") as log, tqdm(total=max_update, desc=f"training {save_dir.name}", unit="upd") as bar:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            match = pattern.search(line)
            if match:
                bar.update(int(match.group(1)) - bar.n)
        code = process.wait()
    if code != 0:
        raise StageFailed(f"fairseq-hydra-train failed (exit status {code}); see {log_path}")
    if not (save_dir / "checkpoint_last.pt").is_file():
        raise StageFailed(f"fairseq-hydra-train wrote no checkpoint in {save_dir}; see {log_path}")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def run_demo(work_dir: Path, settings: DemoSettings, workers: int = 2, lipreading: bool = False) -> dict:
    """Run (or resume) every stage (the lip-reading stage only with ``lipreading``); returns the
    score report's summary."""
    from sf_fairseq.eval import batch_engine, lists, robustness_engine
    from sf_fairseq.eval.perturb_engine import PerturbOptions
    from sf_fairseq.preprocess import prepare_engine
    from sf_fairseq.preprocess.iteration_engine import Iteration, IterationConfig, IterationError
    from sf_fairseq.preprocess.synthetic import corpus_engine

    stages = Stages(work_dir / "stages")
    corpus_dir, roi_dir = work_dir / "corpus", work_dir / "roi"
    labels_1, labels_2 = work_dir / "labels_1", work_dir / "labels_2"
    model_1, model_2 = work_dir / "model_1", work_dir / "model_2"
    scores_dir = work_dir / "scores"

    def make_corpus() -> None:
        job = corpus_engine.CorpusJob(corpus_dir, n_train=settings.n_train, n_test=settings.n_test,
                                      seed=settings.seed, quick=settings.quick, workers=workers)
        try:
            corpus_engine.generate(job)
        except corpus_engine.CorpusError as err:
            raise StageFailed(f"stage corpus failed: {err}") from err

    stages.run("corpus", {"version": corpus_engine.CORPUS_VERSION, "seed": settings.seed, "n_train": settings.n_train,
                          "n_test": settings.n_test, "quick": settings.quick}, make_corpus, (corpus_dir,))

    def videos_of(split: str) -> list[str]:
        root = corpus_dir / split
        return [item.video for item in lists.read_speechforensics_list(root / f"{split}_list.txt", str(root))]

    def prepare_rois() -> dict:
        train_videos = videos_of("train")
        # Every training clip trains. fairseq loads a valid split even with validation off (the
        # demo's setting), so it names two of them, which sf-prepare then finds done already.
        splits = {
            "train": (corpus_dir / "train", train_videos),
            "valid": (corpus_dir / "train", train_videos[:VALID_CLIPS]),
            "test": (corpus_dir / "test", videos_of("test")),
        }
        counts = {}
        for split, (root, videos) in splits.items():
            list_path = work_dir / f"{split}_videos.txt"
            _write_lines(list_path, videos)
            out = roi_dir / ("test" if split == "test" else "train")
            try:
                done = prepare_engine.run(prepare_engine.PrepareJob(
                    list_path, out, root=root, split=split, workers=workers,
                    options=prepare_engine.PrepareOptions(detect_every=corpus_engine.DETECT_EVERY)))
            except prepare_engine.PrepareError as err:
                raise StageFailed(f"stage prepare failed: {err}") from err
            _check_exit("prepare", done.exit_status, allow_partial=True)  # some inputs not ok: fine
            counts[split] = done.n_rows
        return counts

    prepared = stages.run("prepare", {"valid_clips": VALID_CLIPS, "detect_every": corpus_engine.DETECT_EVERY},
                          prepare_rois, (roi_dir,))["result"]

    def cluster(label_dir: Path, n_clusters: int, feature: str, checkpoint: Path | None = None,
                layer: int | None = None) -> Callable[[], None]:
        def action() -> None:
            try:
                Iteration(IterationConfig(
                    roi_dir / "train", label_dir, feature, n_clusters, checkpoint=checkpoint, layer=layer,
                    splits=["train", "valid"], percent=1.0, seed=settings.seed, overwrite=True)).run()
            except (IterationError, ValueError, OSError) as err:
                raise StageFailed(f"stage {label_dir.name} failed: {err}") from err
        return action

    stages.run("labels_1", {"k_1": settings.n_clusters_1},
               cluster(labels_1, settings.n_clusters_1, "mfcc"), (labels_1,))

    # The lip front end (ResNet-18) dominates CPU training time: a 48x48 centre crop of the
    # 96x96 ROI still holds the lips and costs a third of the published 88x88 crop, and a
    # ResNet-18 of a quarter of the published width (16..128 channels) costs ~8x less per frame.
    # Options the tiny config does not set are added with "+" (hydra composes the config before
    # the user dir registers the model's dataclass).
    # Masked video spans substituted in the ResNet's output, not its input: the masked-prediction
    # and alignment terms then share one ResNet pass over the clean clips (~35 % less per update).
    common = [f"dataset.max_tokens={settings.max_tokens}", "criterion._name=av_hubert_alignment",
              f"+model.resnet_width={settings.resnet_width}",
              f"+model.substitute_video_features={str(settings.substitute_video_features).lower()}",
              *(f"+criterion.{name}={value}" for name, value in settings.alignment_options().items()),
              f"common.seed={settings.seed}", f"task.image_crop_size={settings.crop_size}",
              "dataset.disable_validation=true"]
    stages.run("pretrain_1", {"updates_1": settings.updates_1, "tokens": settings.max_tokens,
                              "crop": settings.crop_size, "resnet_width": settings.resnet_width,
                              "substitute_video_features": settings.substitute_video_features,
                              **settings.alignment_options()},
               lambda: _hydra_train(model_1, work_dir / "logs" / "pretrain_1.log", settings.updates_1, [
                   f"task.data={labels_1}", f"task.label_dir={labels_1}", "task.labels=[mfcc]",
                   "task.label_rate=100", *common]), (model_1,))

    stages.run("labels_2", {"k_2": settings.n_clusters_2,
                            "features_checkpoint_sha256": resume.file_sha256(model_1 / "checkpoint_last.pt")},
               cluster(labels_2, settings.n_clusters_2, "model", model_1 / "checkpoint_last.pt", layer=2), (labels_2,))

    stages.run("pretrain_2", {"updates_2": settings.updates_2},
               lambda: _hydra_train(model_2, work_dir / "logs" / "pretrain_2.log", settings.updates_2, [
                   f"task.data={labels_2}", f"task.label_dir={labels_2}", "task.labels=[km]",
                   "task.label_rate=25", f"checkpoint.finetune_from_model={model_1 / 'checkpoint_last.pt'}",
                   *common]), (model_2,))

    def score() -> dict:
        list_path = work_dir / "test_rois.csv"
        with open(list_path, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["path", "audio", "label", "category"])
            for row in _corpus_test_rows(corpus_dir):
                writer.writerow([*_roi_of(roi_dir / "test", row["stem"]), row["label"], row["category"]])
        scored = batch_engine.score_list(batch_engine.BatchJob(
            list_path, scores_dir, scorer_settings(model_2 / "checkpoint_last.pt"), data_root=roi_dir / "test",
            report=True, num_workers=0))
        _check_exit("score", scored.exit_status, allow_partial=True)
        report = json.loads((scores_dir / "report" / "report.json").read_text())
        metrics = report.get("metrics") or {}
        scored_records = _scored_records(scores_dir / "scores.jsonl")
        return {
            "n_scored": report["n_used"],
            "n_left_out": report["n_left_out"],
            "left_out": report["left_out"],
            "auc": metrics.get("auc"),
            "ap": metrics.get("ap"),
            "eer": metrics.get("eer"),
            "per_category_auc": metrics.get("per_category"),
            "auc_vs_unshifted_real": _auc_against_unshifted_real(scored_records),
            "auc_ci95": _auc_intervals(scored_records, seed=settings.seed),
        }

    summary = stages.run("score", scoring_settings(model_2 / "checkpoint_last.pt"), score, (scores_dir,))["result"]

    def localise_partial() -> dict:
        from sf_fairseq.eval import partial_localisation
        from sf_fairseq.eval.pipeline import load_scorer

        clips, missing = [], []
        for row in _corpus_test_rows(corpus_dir):
            if row["category"] != "partial":
                continue
            video, audio = (roi_dir / "test" / rel for rel in _roi_of(roi_dir / "test", row["stem"]))
            if not (video.is_file() and audio.is_file()):
                missing.append(row["path"])  # preprocessing found no face: the score report lists it too
                continue
            clips.append(partial_localisation.WindowClip(row["path"], str(video), str(audio),
                                                         (float(row["window_start"]), float(row["window_end"]))))
        scorer = load_scorer(model_2 / "checkpoint_last.pt", "cpu", precision=SCORE_PRECISION, options=SCORE_OPTIONS)
        try:
            summary, proposals = partial_localisation.localise(scorer, clips)
        except (OSError, ValueError) as err:
            raise StageFailed(f"stage localisation failed: {err}") from err
        resume.atomic_write_json(work_dir / "localisation" / "proposals.json", proposals)
        return {**summary.as_dict(), "left_out": missing}

    localised = stages.run("localisation", {}, localise_partial, (work_dir / "localisation",))["result"]

    def robustness_grid() -> None:
        grid_list = work_dir / "robustness_rois.csv"
        corpus_rows = _corpus_test_rows(corpus_dir)
        sources = [row["source"] for row in corpus_rows if row["category"] == "real"][: settings.robustness_sources]
        kept = {_roi_of(roi_dir / "test", row["stem"])[0] for row in corpus_rows
                if row["source"] in sources and row["category"] in ROBUSTNESS_CATEGORIES}
        with open(work_dir / "test_rois.csv", encoding="utf-8") as f, open(grid_list, "w", newline="") as out:
            rows = [row for row in csv.DictReader(f) if row["category"] in ROBUSTNESS_CATEGORIES
                    and row["path"] in kept]
            writer = csv.DictWriter(out, fieldnames=["path", "audio", "label", "category"])
            writer.writeheader()
            writer.writerows(rows)
        job = robustness_engine.GridJob(
            str(grid_list), work_dir / "robustness" / "copies", work_dir / "robustness" / "results",
            scorer_settings(model_2 / "checkpoint_last.pt"), data_root=str(roi_dir / "test"), roi=True,
            types=tuple(robustness_engine.parse_types(settings.robustness_types)),
            levels=tuple(robustness_engine.parse_levels(settings.robustness_levels)),
            perturbation=PerturbOptions(seed=settings.seed, block_rule=ROBUSTNESS_BLOCK_RULE), num_workers=0)
        try:
            grid = robustness_engine.run_grid(job)
        except robustness_engine.GridError as err:
            raise StageFailed(f"stage robustness failed: {err}") from err
        logger.info("[robustness] %d cells; mean AUC over types %s; report in %s",
                    grid.n_cells, _fmt(grid.mean_auc), grid.report_dir)

    stages.run("robustness", {"types": settings.robustness_types, "levels": settings.robustness_levels,
                              "sources": settings.robustness_sources,
                              "block_rule": ROBUSTNESS_BLOCK_RULE},  # the score rule is in the score stage's key
               robustness_grid, (work_dir / "robustness",))
    read = None
    if lipreading:
        read = _lipreading_stage(stages, work_dir, model_2 / "checkpoint_last.pt", settings, workers)
    write_demo_report(work_dir, settings, prepared, summary, localised, read)
    return summary


def _lipreading_stage(stages: Stages, work_dir: Path, pretrained: Path, settings: DemoSettings,
                      workers: int) -> dict:
    """The lip-reading stage on the demo's pretrained model; returns its ``report.json``."""
    from sf_fairseq.eval import lipreading

    if settings.quick:
        job = lipreading.LipreadingJob.quick(work_dir, pretrained, settings.seed, workers)
    else:
        job = lipreading.LipreadingJob(work_dir, pretrained, seed=settings.seed, workers=workers)
    if job.crop_size != settings.crop_size:
        raise StageFailed(f"the lip-reading stage crops {job.crop_size} pixels, the demo's model {settings.crop_size}")

    def action() -> dict:
        try:
            result = lipreading.run(job)
        except lipreading.LipreadingError as err:
            raise StageFailed(f"stage lipreading failed: {err}") from err
        return json.loads(result.report_path.read_text(encoding="utf-8"))

    # The stage's own steps resume inside <work>/lipreading/ (a changed checkpoint redoes the
    # fine-tuning, not the corpus), so it clears nothing here.
    key = {"lipreading": {name: value for name, value in asdict(job).items() if name not in ("work_dir", "pretrained")},
           "lipreading_pretrained_sha256": resume.file_sha256(pretrained)}
    return stages.run("lipreading", key, action)["result"]


def _roi_of(prepared: Path, stem: str) -> tuple[str, str]:
    """The mouth-ROI video and wav of corpus clip ``stem`` in the prepare output ``prepared``,
    relative to it: the first face track of its prepare record (the most-seen face; a face the
    tracker lost and found again gives two tracks), else the single-track names."""
    record = read_prepare_record(prepared, stem)
    tracks = record.tracks if record is not None and isinstance(record.tracks, list) else []
    if tracks and isinstance(record.audio, str):
        return min(tracks, key=lambda track: track.get("track", 0))["video"], record.audio
    return f"video/{stem}.mp4", f"audio/{stem}.wav"


def _corpus_test_rows(corpus_dir: Path) -> list[dict[str, str]]:
    """The rows of the corpus's ``test/test.csv``, each with ``stem``: its path without the
    extension, which is also the ROI's name under ``video/`` and ``audio/``."""
    with open(corpus_dir / "test" / "test.csv", encoding="utf-8") as f:
        return [{**row, "stem": os.path.splitext(row["path"])[0]} for row in csv.DictReader(f)]


def _scored_records(scores_path: Path) -> list[ScoreRecord]:
    """The scored clips of a score file (a retried item counts once)."""
    return [record for record in latest_records([scores_path]).values()
            if record.status == OK and record.score is not None]


def _auc_intervals(scored: list[ScoreRecord], n_boot: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """95% stratified bootstrap interval of each fake category's AUC against all real-labelled
    clips (and of all fakes together, ``"all"``)."""
    real, fake = [], {}
    for record in scored:
        if record.label is not None:
            (real if record.label == 1 else fake.setdefault(record.category or "unknown", [])).append(record.score)
    groups = {"all": [s for scores in fake.values() for s in scores], **fake}
    out = {}
    for category, scores in sorted(groups.items()):
        if real and scores:
            labels = np.array([1] * len(real) + [0] * len(scores))
            low, high = bootstrap_intervals(labels, np.array(real + scores), n_boot=n_boot, seed=seed)["auc"]
            out[category] = [low, high]
    return out


def _auc_against_unshifted_real(scored: list[ScoreRecord]) -> dict[str, float]:
    """AUC of each fake category against the unshifted real clips alone (``offset_small``
    clips, labelled real, left out), to show how much of the gap they account for."""
    by_category: dict[str, list[float]] = {}
    for record in scored:
        by_category.setdefault(record.category, []).append(float(record.score))
    real = by_category.get("real", [])
    out = {}
    for category, fake in sorted(by_category.items()):
        if category in ("real", "offset_small") or not real or not fake:
            continue
        labels = np.array([1] * len(real) + [0] * len(fake))
        out[category] = roc_auc(labels, np.array(real + fake))
    return out


def _stage_total(seconds: dict[str, float | None]) -> str:
    """``"1417 s in all: detection 1245 s, lip reading 172 s"``: the lip-reading stage is an
    optional part of the demo (``--no-lipreading``), timed apart from the detection stages."""
    total = sum(v or 0 for v in seconds.values())
    if "lipreading" not in seconds:
        return f"{total:.0f} s in all"
    lipreading = seconds["lipreading"] or 0
    return f"{total:.0f} s in all: detection {total - lipreading:.0f} s, lip reading {lipreading:.0f} s"


def write_demo_report(work_dir: Path, settings: DemoSettings, prepared: dict, summary: dict,
                      localised: dict | None = None, read: dict | None = None) -> Path:
    """``demo_report.md``: what was trained on what, the figures, and what they do not mean."""
    seconds = {p.stem: json.loads(p.read_text()).get("seconds") for p in sorted((work_dir / "stages").glob("*.json"))}
    lines = [
        "# sf_fairseq demo report",
        "",
        "**This is a demonstration of the pipeline, not a detector for real-world videos.** The model "
        f"is a tiny AV-HuBERT (2 layers, width 64, a lip ResNet-18 of width {settings.resnet_width}, "
        f"{settings.crop_size}x{settings.crop_size} lip crops) "
        f"pretrained for {settings.updates_1 + settings.updates_2} updates on "
        f"{settings.n_train} synthetic clips (one face photo family, espeak-ng speech, "
        "rendered lip motion), real clips only. To score real videos, point the scorer at a "
        "published AV-HuBERT checkpoint (e.g. `large_vox_iter5.pt`): "
        "`sf-score-batch --list test_list.txt --data-root ROIS --path large_vox_iter5.pt "
        "--results-path out/ --report`.",
        "",
        "## What ran",
        "",
        f"- corpus: {settings.n_train} real training clips, {settings.n_test} test sources x every fake category "
        f"(seed {settings.seed})",
        f"- preprocessing (dlib landmarks, mouth ROIs), manifest rows (one per face track): {prepared}",
        f"- iteration 1: MFCC k-means (K={settings.n_clusters_1}, 100 Hz), {settings.updates_1} updates",
        f"- iteration 2: k-means (K={settings.n_clusters_2}) of block 2 of the iteration-1 model, "
        f"{settings.updates_2} more updates",
        "- criterion: masked prediction + frame-wise audio-visual alignment (`av_hubert_alignment`, "
        f"negatives: {settings.alignment_negatives}, weight {settings.alignment_weight:g}, "
        f"temperature {settings.alignment_temperature:g}, clip-level term weight {settings.alignment_clip_weight:g}, "
        f"video/audio excerpts shifted by up to {settings.alignment_max_shift} frames)",
        f"- stage seconds: {seconds} ({_stage_total(seconds)})",
        f"- host: {_host_description()}",
        "",
        "## Results on the synthetic test set",
        "",
        f"Scored {summary['n_scored']} clips ({summary['n_left_out']} left out: {summary['left_out'] or 'none'}).",
        "",
        "| fakes | AUC against all real-labelled clips [95% bootstrap interval] | AUC against unshifted real clips |",
        "|---|---|---|",
    ]
    intervals = summary.get("auc_ci95") or {}
    unshifted = summary.get("auc_vs_unshifted_real") or {}
    rows = {"all": summary["auc"], **{category: value["auc"] if isinstance(value, dict) else value
                                      for category, value in (summary.get("per_category_auc") or {}).items()}}
    for category, value in sorted(rows.items(), key=lambda item: item[0] != "all"):
        lines.append(f"| {category} | {_fmt(value)}{_fmt_interval(intervals.get(category))} | "
                     f"{_fmt(unshifted.get(category)) if category != 'all' else ''} |")
    lines += [
        "",
        f"AP {_fmt(summary['ap'])}, EER {_fmt(summary['eer'])}. `offset_small` clips (audio shifted "
        "0.12-0.4 s, inside the ±0.6 s search window) are labelled real, as the detector should "
        "re-align them; the last column leaves them out, to show how much of each fake category's "
        "gap comes from them. Full report, ROC curves and score histograms: `scores/report/`.",
        "",
        *_localisation_lines(localised),
        *(_lipreading_lines(read) if read else []),
        f"## Robustness (real vs dubbed of the first {settings.robustness_sources} test sources, "
        "perturbed mouth ROIs)",
        "",
    ]
    grid_report = work_dir / "robustness" / "results" / "report" / "report.md"
    if grid_report.is_file():
        body = grid_report.read_text(encoding="utf-8").splitlines()
        lines += [line for line in body if not line.startswith("# ")]
        lines.append("Grid files: `robustness/results/report/` (table, AUC against level plot).")
    else:
        lines.append("(the robustness stage has not run)")
    path = work_dir / "demo_report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _localisation_lines(localised: dict | None) -> list[str]:
    """The report's section on where the ``partial`` fakes lie (see :mod:`.partial_localisation`)."""
    if not localised:
        return []
    ap, ar = localised["ap"], localised["ar"]
    return [
        "## Partial fakes: where the lips stop following the speech",
        "",
        f"A partial fake is real except in one 0.8-1.6 s window; its clip score says little, so "
        f"its localisation is the figure. Over {localised['n_clips']} partial clips, segment proposals "
        "from the per-frame agreement (the benchmark localisation rule) against the true windows:",
        "",
        "| AP@0.5 | AP@0.75 | AR@1 | AR@5 | AR@10 | mean IoU of the top proposal | top proposal IoU > 0.5 |",
        "|---|---|---|---|---|---|---|",
        f"| {_fmt(_key(ap, 0.5))} | {_fmt(_key(ap, 0.75))} | {_fmt(_key(ar, 1))} | {_fmt(_key(ar, 5))} | "
        f"{_fmt(_key(ar, 10))} | {_fmt(localised['mean_top_iou'])} | {localised['top_iou_above_half']:.0%} |",
        "",
        "AP and AR as the AV-Deepfake1M SDK computes them (AR averaged over IoU 0.5:0.95). "
        "Proposals per clip: `localisation/proposals.json`."
        + (f" Left out (not preprocessed): {', '.join(localised['left_out'])}." if localised.get("left_out") else ""),
        "",
    ]


def _lipreading_lines(report: dict) -> list[str]:
    from sf_fairseq.eval import lipreading

    return [*lipreading.markdown_lines(report), ""]


def _key(table: dict, key: float) -> float | None:
    """``table[key]`` whether the table was written as JSON (string keys) or not."""
    return table.get(key, table.get(str(key)))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _fmt_interval(interval: list[float] | None) -> str:
    return "" if not interval else f" [{interval[0]:.2f}, {interval[1]:.2f}]"


def _host_description() -> str:
    """CPU model, vector capability (what decides CPU training speed here) and core count."""
    from sf_fairseq.eval.encode import cpu_capability, cpu_model_name

    return (f"{cpu_model_name()}, {cpu_capability()}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f} when the report was written")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sf_fairseq.eval.demo",
        description=(
            "Run the whole method offline on a synthetic talking-face corpus: generate real "
            "training clips and real + fake test clips, preprocess them (dlib landmarks, mouth "
            "crops), pretrain a tiny AV-HuBERT in two k-means iterations on real clips only, and "
            "score the test set. A demonstration of the pipeline, not a detector for real videos."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--work-dir", default="demo_output", help="where every stage writes its output")
    parser.add_argument("--quick", action="store_true", help="a few minutes' run (small corpus, few updates)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus, clustering and training")
    parser.add_argument("--workers", type=int, default=2, help="processes for generation and preprocessing")
    parser.add_argument("--lipreading", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                        help="run the lip-reading stage (GRID corpus, fine-tuning, lips-only and audio-only "
                        "transcripts); on in the full demo, off with --quick unless given")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging("%(asctime)s %(levelname)s %(message)s"):
        settings = DemoSettings.quick_run(args.seed) if args.quick else DemoSettings.full(args.seed)
        work_dir = Path(args.work_dir).resolve()
        (work_dir).mkdir(parents=True, exist_ok=True)
        (work_dir / "demo_settings.json").write_text(json.dumps(asdict(settings), indent=2))
        try:
            lipreading = getattr(args, "lipreading", not args.quick)
            run_demo(work_dir, settings, args.workers, lipreading)
        except StageFailed as err:
            logger.error("%s", err)
            return 1
        print((work_dir / "demo_report.md").read_text(encoding="utf-8"))
        return 0


if __name__ == "__main__":
    sys.exit(main())
