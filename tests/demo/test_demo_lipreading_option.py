"""The demo's lip-reading stage: on by default in the full demo, off in --quick unless asked for,
and its section in the demo report."""

from __future__ import annotations

from pathlib import Path

import pytest

from sf_fairseq.eval import demo
from sf_fairseq.eval.lipreading import ClipReading, build_report


@pytest.mark.parametrize("argv, expected", [
    ([], True), (["--no-lipreading"], False), (["--quick"], False), (["--quick", "--lipreading"], True),
])
def test_lipreading_default_depends_on_the_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                argv: list[str], expected: bool) -> None:
    seen = {}

    def fake_run_demo(work_dir, settings, workers, lipreading):
        seen["lipreading"], seen["quick"] = lipreading, settings.quick
        raise demo.StageFailed("stop here")

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert demo.main([*argv, "--work-dir", str(tmp_path / "w")]) == 1
    assert seen == {"lipreading": expected, "quick": "--quick" in argv}


def test_demo_report_carries_the_lipreading_tables(tmp_path: Path) -> None:
    readings = [ClipReading("real/s00000", "real", "bin blue at a one now", "bin blue at a one now",
                            "bin blue at a one now", "bin blue at a one now"),
                ClipReading("dubbed/s00000", "dubbed", "bin blue at a one now", "set red by c two soon",
                            "bin blue at e one now", "set red by c two soon")]
    report = build_report(readings, {"updates": 10, "n_train": 4, "n_test": 1}, {"finetune": 3.0}, {}, 1)
    (tmp_path / "stages").mkdir()
    summary = {"n_scored": 0, "n_left_out": 0, "left_out": [], "auc": None, "ap": None, "eer": None}
    prepared = {"train": 97, "valid": 2, "test": 130}  # one training face split into two tracks
    path = demo.write_demo_report(tmp_path, demo.DemoSettings.quick_run(0), prepared, summary, None, report)
    text = path.read_text()
    assert "updates on 96 synthetic clips" in text  # clips, not the manifest's face tracks
    assert "manifest rows (one per face track): {'train': 97" in text
    assert "## Lip reading" in text
    assert "| dubbed | 1 |" in text and "set red by c two soon" in text


def test_demo_report_times_the_lipreading_stage_apart(tmp_path: Path) -> None:
    stages = tmp_path / "stages"
    stages.mkdir()
    for name, seconds in {"corpus": 100.0, "pretrain_1": 200.5, "lipreading": 150.0}.items():
        (stages / f"{name}.json").write_text(f'{{"seconds": {seconds}}}')
    summary = {"n_scored": 0, "n_left_out": 0, "left_out": [], "auc": None, "ap": None, "eer": None}
    text = demo.write_demo_report(tmp_path, demo.DemoSettings.quick_run(0), {}, summary).read_text()
    assert "(450 s in all: detection 300 s, lip reading 150 s)" in text

    (stages / "lipreading.json").unlink()
    text = demo.write_demo_report(tmp_path, demo.DemoSettings.quick_run(0), {}, summary).read_text()
    assert "(300 s in all)" in text
