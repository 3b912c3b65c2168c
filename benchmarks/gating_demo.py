"""What speech gating changes, on a handful of synthetic clips (issue 15).

Makes clips with the project's generator (:mod:`sf_fairseq.preprocess.synthetic`): one real
clip as the generator plans it, the same speech with 2 s of leading silence, with 2 s of
trailing silence, with 1.5 s on both sides, a silent-audio fake (the lips move, the audio track
is digital silence) and a dubbed fake (another sentence and voice). It preprocesses them with
``sf-prepare``'s :class:`~sf_fairseq.preprocess.prepare_engine.VideoPreprocessor` (faces tracked, mouth
ROI, wav, status records), scores them with ``sf-score-batch`` and prints, per clip, the
paper's score (every frame) beside the speech-gated score (speech frames only), the detected
speech, the verdict and its reasons::

    python benchmarks/gating_demo.py --checkpoint ../shared/fixtures/avhubert_tiny/checkpoint.pt

With the tiny fixture checkpoint the scores carry no meaning (its weights are not trained for
lip-speech agreement); what the table shows is what the gating does: how much of each clip is
speech, which frames enter the gated score, and which clips the verdict refuses to judge. Give
a real checkpoint (e.g. ``base_lrs3_iter5.pt``) for meaningful scores, and ``--reference`` for
p-values and real/fake verdicts.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from sf_fairseq.eval import score_batch
from sf_fairseq.eval.results import latest_records
from sf_fairseq.preprocess.prepare_engine import InputItem, VideoPreprocessor
from sf_fairseq.preprocess.synthetic import corpus_engine
from sf_fairseq.preprocess.synthetic.clips import ClipPlan, place_audio, render_frames, write_mp4
from sf_fairseq.preprocess.synthetic.faces import augment
from sf_fairseq.preprocess.synthetic.fakes import make_fake
from sf_fairseq.preprocess.synthetic.render import FaceRenderer, HeadMotion
from sf_fairseq.preprocess.synthetic.visemes import FPS, mouth_track

SIZE = (320, 320)


def with_silence(plan: ClipPlan, lead: float, tail: float, rng: np.random.Generator) -> ClipPlan:
    """``plan``'s speech with ``lead`` s of silence before it and ``tail`` s after (the mouth
    rests while nothing is said)."""
    utt = plan.utterance
    n = int(math.ceil((lead + utt.duration + tail) * FPS))
    return plan.with_changes(
        head=HeadMotion.random(rng, n), mouth=mouth_track(utt.phonemes, n, offset=lead), blur=np.zeros(n),
        audio=place_audio(utt.audio, lead, n), lead=lead,
        meta={"category": f"real, {lead:g} s before, {tail:g} s after", "label": 1})


def demo_clips(seed: int) -> dict[str, ClipPlan]:
    """The clips of the demo, by name."""
    real = corpus_engine.source_plan(seed, "test", 0, SIZE, quick=True, recorded_fraction=0.0)
    rng = np.random.default_rng(seed)
    return {
        "real": real,
        "real_lead2": with_silence(real, 2.0, 0.3, rng),
        "real_trail2": with_silence(real, 0.3, 2.0, rng),
        "real_both1.5": with_silence(real, 1.5, 1.5, rng),
        "silent_fake": real.with_changes(audio=np.zeros_like(real.audio), meta={"category": "silent audio",
                                                                                 "label": 0}),
        "dubbed": make_fake(real, "dubbed", np.random.default_rng([seed, 1])),
    }


def render(plans: dict[str, ClipPlan], raw: Path) -> None:
    renderer = FaceRenderer(*augment(next(iter(plans.values())).augmentation, SIZE))  # one face for all
    raw.mkdir(parents=True, exist_ok=True)
    for name, plan in plans.items():
        write_mp4(raw / f"{name}.mp4", render_frames(plan, renderer), plan.audio, SIZE)


def prepare(plans: dict[str, ClipPlan], raw: Path, rois: Path) -> list[str]:
    """Preprocess the raw clips; the CSV list lines of those that gave a ROI."""
    preprocessor = VideoPreprocessor()
    lines = []
    for name, plan in plans.items():
        record = preprocessor.process(InputItem(id=name, path=str(raw / f"{name}.mp4")), rois)
        if record["status"] != "ok":
            logging.warning("%s: preprocessing ended %s (%s)", name, record["status"], record.get("reason"))
            continue
        lines.append(f"video/{name}.mp4,{plan.meta['label']},audio/{name}.wav")
    return lines


def fmt(x: float | None, offset: int | None = None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" + ("" if offset is None else f" ({offset:+d})")


def table(records: dict[str, dict], plans: dict[str, ClipPlan]) -> str:
    header = ["clip", "label", "length s", "speech s", "speech %", "paper score (offset)",
              "gated score (offset)", "verdict", "reasons"]
    rows = []
    for name, plan in plans.items():
        r = records.get(f"video/{name}.mp4")
        if r is None:
            rows.append([name, str(plan.meta["label"]), f"{plan.n_frames / FPS:.2f}", "not prepared"] + [""] * 5)
            continue
        rows.append([name, str(plan.meta["label"]), f"{plan.n_frames / FPS:.2f}", f"{r['speech_seconds']:.2f}",
                     f"{100 * r['speech_fraction']:.0f}", fmt(r["score"], r["best_offset"]),
                     fmt(r["score_speech"], r["best_offset_speech"]), r["verdict"], ", ".join(r["reasons"])])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="AV-HuBERT checkpoint to score with")
    p.add_argument("--reference", help="reference set JSON (sf-reference-set) for p-values and verdicts")
    p.add_argument("--work-dir", help="keep the clips, ROIs and records here (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=3, help="generator seed")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="sf_gating_") as tmp:
        work = Path(args.work_dir or tmp)
        start = time.perf_counter()
        plans = demo_clips(args.seed)
        render(plans, work / "raw")
        made = time.perf_counter()
        lines = prepare(plans, work / "raw", work / "rois")
        (work / "list.csv").write_text("path,label,audio\n" + "\n".join(lines) + "\n", encoding="utf-8")
        prepared = time.perf_counter()
        score_args = ["--path", args.checkpoint, "--list", str(work / "list.csv"), "--data-root", str(work / "rois"),
                      "--results-path", str(work / "scores"), "--num-workers", "0", "--cpu", "--no-progress",
                      "--overwrite"]
        if args.reference:
            score_args += ["--reference", args.reference]
        score_batch.main(score_args)
        records = latest_records([work / "scores" / "scores.jsonl"])
        scored = time.perf_counter()
        print()
        print(table(records, plans))
        print(f"\nclips made in {made - start:.1f} s, preprocessed in {prepared - made:.1f} s, "
              f"scored in {scored - prepared:.1f} s")
        if args.work_dir:
            print(f"records: {json.dumps(str(work / 'scores' / 'scores.jsonl'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
