"""The robustness grid: one AUC per cell, mean per type, plot, reuse of finished cells."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from robustness_media import write_roi_pair
from sf_fairseq import resume
from sf_fairseq.eval import robustness as rb
from sf_fairseq.eval import robustness_engine as rbe
from sf_fairseq.eval import batch_engine


def fake_report(auc: float, n: int = 10) -> dict:
    return {"n_used": n, "metrics": {"auc": auc}}


def test_table_means_and_report_files(tmp_path):
    reports = {"clean": fake_report(0.9)}
    aucs = {("cs", 1): 0.88, ("cs", 2): 0.86, ("gnc", 1): 0.7, ("gnc", 2): 0.5}
    reports.update({f"{c}_{lv}": fake_report(a) for (c, lv), a in aucs.items()})
    rep = rbe.write_grid_report(reports, ["cs", "gnc"], [1, 2], tmp_path,
                               {"checkpoint": "c.pt", "list": "l.txt", "roi": True, "seed": 0,
                                "block_rule": "reference"})
    assert rep["types"]["cs"]["auc"] == {"1": 0.88, "2": 0.86}
    assert rep["types"]["cs"]["mean"] == pytest.approx(0.87)
    assert rep["types"]["gnc"]["mean"] == pytest.approx(0.6)
    assert rep["mean_per_level"] == {"1": pytest.approx(0.79), "2": pytest.approx(0.68)}
    assert rep["mean"] == pytest.approx(0.735)
    assert rep["clean"]["auc"] == 0.9
    md = (tmp_path / "report.md").read_text()
    assert "| cs (saturation) | 0.8800 | 0.8600 | 0.8700 |" in md
    assert "| gnc (noise) | 0.7000 | 0.5000 | 0.6000 |" in md
    assert json.loads((tmp_path / "report.json").read_text())["mean"] == pytest.approx(0.735)
    assert (tmp_path / "auc_vs_level.png").stat().st_size > 1000
    # A missing cell leaves its type's mean undefined rather than wrong.
    del reports["gnc_2"]
    table = rbe.grid_table(reports, ["cs", "gnc"], [1, 2])
    assert table["types"]["gnc"]["mean"] is None and table["mean"] is None


def test_type_and_level_specs():
    assert rbe.parse_types("video") == ["cs", "cc", "bw", "gnc", "gb", "jpeg", "vc"]
    assert rbe.parse_types("audio") == ["noise", "aac", "mp3", "resample", "band"]
    assert rbe.parse_types("gb, noise") == ["gb", "noise"]
    assert rbe.parse_levels("1-5") == [1, 2, 3, 4, 5] and rbe.parse_levels("2,4") == [2, 4]
    with pytest.raises(ValueError):
        rbe.parse_types("gb,blur")
    with pytest.raises(ValueError):
        rbe.parse_levels("0-3")


@pytest.mark.slow
def test_roi_grid_end_to_end_with_the_fixture_checkpoint(tmp_path, shared_dir, monkeypatch):
    root = tmp_path / "mouths"
    lines = []
    for i in range(2):
        write_roi_pair(root / "real" / f"r{i}.mp4", seed=i)
        write_roi_pair(root / "fake" / "FaceSwap" / f"f{i}.mp4", seed=10 + i, audio_seed=20 + i)
        lines += [f"real/r{i}.mp4 1", f"fake/FaceSwap/f{i}.mp4 0"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    results = tmp_path / "results"

    def grid_argv(types: str, levels: str) -> list[str]:
        return ["--list", str(tmp_path / "list.txt"), "--data-root", str(root), "--roi",
                "--work-dir", str(tmp_path / "work"), "--results-path", str(results),
                "--types", types, "--levels", levels, "--no-clean",
                "--path", str(shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"),
                "--cpu", "--num-workers", "0", "--n-boot", "20", "--no-progress"]

    argv = grid_argv("gnc,noise", "1,5")
    assert rb.main(argv) == 0
    rep = json.loads((results / "report" / "report.json").read_text())
    for code in ("gnc", "noise"):
        for level in ("1", "5"):
            auc = rep["types"][code]["auc"][level]
            assert 0.0 <= auc <= 1.0
            assert rep["types"][code]["n_used"][level] == 4
            cell = json.loads((results / "cells" / f"{code}_{level}" / "report" / "report.json").read_text())
            assert cell["metrics"]["auc"] == auc and cell["inputs"]["cell"] == f"{code}_{level}"
        assert rep["types"][code]["mean"] == pytest.approx(
            (rep["types"][code]["auc"]["1"] + rep["types"][code]["auc"]["5"]) / 2)
    assert (results / "report" / "auc_vs_level.png").exists()
    assert "| gnc (noise) |" in (results / "report" / "report.md").read_text()
    # The cells really differ: strong audio noise changes the scores.
    def scores(cell: str) -> dict:
        path = results / "cells" / cell / "scores.jsonl"
        return {r["id"]: r["score"] for r in map(json.loads, path.read_text().splitlines())}
    assert scores("noise_1") != scores("noise_5")
    assert set(scores("gnc_5")) == {line.split()[0] for line in lines}

    # A rerun reuses every finished cell: no scoring, no model loading, no new copies.
    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(batch_engine, "score_items", refuse)
    monkeypatch.setattr(rbe, "perturb_items", refuse)
    monkeypatch.setattr("sf_fairseq.eval.pipeline.load_scorer", refuse)
    before = (results / "cells" / "gnc_5" / "report" / "report.json").stat().st_mtime_ns
    assert rb.main(argv) == 0
    assert (results / "cells" / "gnc_5" / "report" / "report.json").stat().st_mtime_ns == before
    # Finished cells made with other settings are not mixed into a new grid.
    with pytest.raises(SystemExit, match="other settings"):
        rb.main(argv + ["--seed", "1"])
    # Widening the grid computes only the new cell.
    monkeypatch.undo()
    scored = []
    real_score_items = batch_engine.score_items
    monkeypatch.setattr(batch_engine, "score_items",
                        lambda items, *a, **k: scored.append(len(items)) or real_score_items(items, *a, **k))
    assert rb.main(grid_argv("gnc", "1,3,5")) == 0
    assert scored == [4]
    rep = json.loads((results / "report" / "report.json").read_text())
    assert list(rep["types"]) == ["gnc"] and set(rep["types"]["gnc"]["auc"]) == {"1", "3", "5"}


@pytest.mark.slow
def test_raw_grid_perturbs_copies_then_preprocesses_them(tmp_path, shared_dir, monkeypatch):
    """The raw-video path: copies go to preprocessing (a stand-in for dlib tracking here, which
    makes ROI pairs), its status records decide what is scored, ids stay those of the list."""
    from robustness_media import write_raw_video

    from sf_fairseq.eval import perturb_engine as pt

    root = tmp_path / "raw"
    for rel, seed in (("real/a.mp4", 0), ("real/b.mp4", 1), ("fake/Deepfakes/c.mp4", 2)):
        write_raw_video(root / rel, n_frames=12, seed=seed)
    (tmp_path / "list.txt").write_text("real/a.mp4 1\nreal/b.mp4 1\nfake/Deepfakes/c.mp4 0\n")
    calls = []

    def fake_prepare(videos_txt: Path, prep_root: str, roi_dir: Path, workers: int, extra) -> None:
        inputs = videos_txt.read_text().splitlines()
        calls.append((roi_dir.parent.name, prep_root, inputs, list(extra)))
        for path in inputs:
            item_id = Path(path).relative_to(prep_root).with_suffix("").as_posix()
            assert pt.probe(path).n_frames == 12
            status = roi_dir / "status" / f"{item_id}.json"
            status.parent.mkdir(parents=True, exist_ok=True)
            if item_id == "real/b":
                status.write_text(json.dumps({"id": item_id, "status": "no_face", "reason": "no face followed"}))
                continue
            video = write_roi_pair(roi_dir / "video" / f"{item_id}.mp4", seed=len(item_id))
            (roi_dir / "audio" / item_id).parent.mkdir(parents=True, exist_ok=True)
            video.with_suffix(".wav").rename(roi_dir / "audio" / f"{item_id}.wav")
            status.write_text(json.dumps({"id": item_id, "status": "ok", "audio": f"audio/{item_id}.wav",
                                          "tracks": [{"video": f"video/{item_id}.mp4"}]}))

    monkeypatch.setattr(rbe, "_prepare", fake_prepare)
    results = tmp_path / "results"
    argv = ["--list", str(tmp_path / "list.txt"), "--data-root", str(root),
            "--work-dir", str(tmp_path / "work"), "--results-path", str(results),
            "--types", "cc", "--levels", "2", "--prepare-args", "--detect-every 5",
            "--path", str(shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"),
            "--cpu", "--num-workers", "0", "--n-boot", "0", "--no-progress"]
    assert rb.main(argv) == 0
    (clean_cell, clean_root, clean_inputs, extra), (cell, cell_root, cell_inputs, _) = calls
    assert (clean_cell, cell) == ("clean", "cc_2") and extra == ["--detect-every", "5"]
    assert clean_root == str(root) and clean_inputs[0] == str(root / "real" / "a.mp4")
    media = tmp_path / "work" / "cells" / "cc_2" / "media"
    assert cell_root == str(media) and cell_inputs[2] == str(media / "fake" / "Deepfakes" / "c.mp4")
    checkpoint = shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"
    for name in ("clean", "cc_2"):
        report = json.loads((results / "cells" / name / "report" / "report.json").read_text())
        assert report["n_used"] == 2 and report["left_out"] == {"failed: prepare:no_face": 1}
        records = [json.loads(x) for x in (results / "cells" / name / "scores.jsonl").read_text().splitlines()]
        assert sorted(r["id"] for r in records) == ["fake/Deepfakes/c.mp4", "real/a.mp4", "real/b.mp4"]
        # Scored records name the checkpoint and the ROI they scored (provenance), with verdicts.
        for record in (r for r in records if r["status"] == "ok"):
            prov = record["provenance"]
            assert prov["checkpoint_sha256"] == resume.file_sha256(checkpoint)
            assert prov["files"]["video"]["path"] == record["video"]
            assert (record["verdict"], record["reasons"][-1]) == ("inconclusive", "uncalibrated")
    rep = json.loads((results / "report" / "report.json").read_text())
    assert rep["types"]["cc"]["n_used"] == {"2": 2} and rep["clean"]["n_used"] == 2


def _grid(tmp_path: Path, *extra: str) -> rbe.Grid:
    args = rb.build_parser().parse_args([
        "--list", str(tmp_path / "list.txt"), "--roi", "--work-dir", str(tmp_path / "work"),
        "--results-path", str(tmp_path / "results"), "--path", str(tmp_path / "model.pt"),
        "--precision", "fp32", *extra])  # fp32 pinned: `auto` is bf16 on a CPU that runs it natively
    return rbe.Grid(rb.job_from_arguments(args), [])


def test_cell_results_are_keyed_by_every_score_setting(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"weights 1")
    (tmp_path / "list.txt").write_text("a.mp4 1\n")
    grid = _grid(tmp_path)
    settings = grid.cell_settings("gb_1", "gb", 1)
    grid.accept_cell("gb_1", settings)
    scores = tmp_path / "results" / "cells" / "gb_1" / "scores.jsonl"
    scores.write_text('{"id": "a.mp4", "status": "ok", "score": 0.5}\n')  # an unfinished cell
    _grid(tmp_path).accept_cell("gb_1", settings)  # same settings: resumed
    assert scores.exists()
    # The checkpoint by content: moved, it is the same; rewritten, it is another.
    (tmp_path / "model.pt").rename(tmp_path / "moved.pt")
    assert _grid(tmp_path, "--path", str(tmp_path / "moved.pt")).cell_settings("gb_1", "gb", 1) == settings
    (tmp_path / "moved.pt").rename(tmp_path / "model.pt")
    for extra, named in ((["--precision", "bf16"], "precision"), (["--max-seconds", "3"], "max_seconds"),
                         (["--layer", "1"], "layer"), (["--preset", "fast"], "perturbation.preset"),
                         (["--data-root", str(tmp_path)], "data_root")):
        other = _grid(tmp_path, *extra)
        with pytest.raises(resume.SettingsMismatch, match=named):
            other.accept_cell("gb_1", other.cell_settings("gb_1", "gb", 1))
    (tmp_path / "model.pt").write_bytes(b"weights 2")
    with pytest.raises(resume.SettingsMismatch, match="checkpoint_sha256"):
        grid.accept_cell("gb_1", grid.cell_settings("gb_1", "gb", 1))
    raw = _grid(tmp_path, "--prepare-args", "--detect-every 5")
    raw.job = dataclasses.replace(raw.job, roi=False)
    assert raw.cell_settings("gb_1", "gb", 1)["prepare_args"] == ["--detect-every", "5"]
    # --overwrite discards the cell's old scores.
    overwrite = _grid(tmp_path, "--overwrite")
    overwrite.accept_cell("gb_1", overwrite.cell_settings("gb_1", "gb", 1))
    assert not scores.exists()


def test_unfinished_cell_of_other_settings_is_not_resumed(tmp_path, monkeypatch):
    (tmp_path / "model.pt").write_bytes(b"weights")
    (tmp_path / "list.txt").write_text("a.mp4 1\n")
    cell = tmp_path / "results" / "cells" / "gb_1"
    cell.mkdir(parents=True)
    (cell / "scores.jsonl").write_text('{"id": "a.mp4", "status": "ok", "score": 0.5}\n')
    (cell / "fingerprint.json").write_text('{"checkpoint_sha256": "another model"}\n')

    def refuse(*args, **kwargs):
        raise AssertionError("a cell made with other settings was resumed")

    monkeypatch.setattr(rbe, "perturb_items", refuse)
    with pytest.raises(SystemExit, match="cell gb_1 .*other settings"):
        rb.main(["--list", str(tmp_path / "list.txt"), "--roi", "--work-dir", str(tmp_path / "work"),
                 "--results-path", str(tmp_path / "results"), "--path", str(tmp_path / "model.pt"),
                 "--types", "gb", "--levels", "1", "--no-clean", "--cpu"])


def test_raw_inputs_sharing_a_stem_keep_their_own_preprocessing(tmp_path):
    """sf-prepare names inputs that share a stem with their extension (a.mp4, a.mkv): the grid
    must read each one's own status record, not the same 'a' for both."""
    from sf_fairseq.eval import lists
    from sf_fairseq.eval.robustness_engine import _prepare_ids, _roi_items

    for name in ("a.mp4", "a.mkv", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    rels = ["a.mp4", "a.mkv", "b.mp4"]
    videos_txt = tmp_path / "inputs.txt"
    videos_txt.write_text("".join(str(tmp_path / r) + "\n" for r in rels))
    ids = _prepare_ids(videos_txt, str(tmp_path), rels)
    assert ids == ["a.mp4", "a.mkv", "b"]
    roi = tmp_path / "roi"
    (roi / "status").mkdir(parents=True)
    for prepare_id in ids:
        record = {"id": prepare_id, "status": "ok", "audio": f"audio/{prepare_id}.wav",
                  "tracks": [{"video": f"video/{prepare_id}.mp4"}]}
        (roi / "status" / f"{prepare_id}.json").write_text(json.dumps(record))
    items = [lists.EvalItem(r, str(tmp_path / r), "", 1, "real") for r in rels]
    ok, failed = _roi_items(items, ids, roi)
    assert not failed
    assert [Path(i.video).name for i in ok] == ["a.mp4.mp4", "a.mkv.mp4", "b.mp4"]
    assert [Path(i.audio).name for i in ok] == ["a.mp4.wav", "a.mkv.wav", "b.wav"]
