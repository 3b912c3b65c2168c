"""The robustness grid called as a function: GridJob (typed) keys cells as the command's options
do, GridError where sf-robustness exits with ``error: ...``, and prepare's status records read
through results.prepare_item_status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sf_fairseq.eval import lists, results
from sf_fairseq.eval import robustness as rb
from sf_fairseq.eval import robustness_engine as rbe
from sf_fairseq.eval.perturb_engine import PerturbOptions
from sf_fairseq.eval.scorer_settings import ScorerSettings


def test_a_typed_job_keys_cells_as_the_command_line_does(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"weights")
    (tmp_path / "list.txt").write_text("a.mp4 1\n")
    args = rb.build_parser().parse_args([
        "--list", str(tmp_path / "list.txt"), "--data-root", str(tmp_path), "--work-dir", str(tmp_path / "w"),
        "--results-path", str(tmp_path / "r"), "--path", str(tmp_path / "model.pt"), "--cpu",
        "--precision", "fp32", "--max-offset", "5", "--types", "gb,noise", "--levels", "2,4", "--seed", "3",
        "--block-rule", "scaled", "--prepare-args", "--detect-every 5"])
    from_cli = rb.job_from_arguments(args)
    typed = rbe.GridJob(
        str(tmp_path / "list.txt"), tmp_path / "w", tmp_path / "r",
        ScorerSettings(str(tmp_path / "model.pt"), cpu=True, precision="fp32", max_offset=5),
        data_root=str(tmp_path), types=("gb", "noise"), levels=(2, 4),
        perturbation=PerturbOptions(seed=3, block_rule="scaled"), prepare_args=("--detect-every", "5"))
    for cell, code, level in (("clean", None, None), ("gb_2", "gb", 2)):
        assert rbe.Grid(typed, []).cell_settings(cell, code, level) == rbe.Grid(from_cli, []).cell_settings(
            cell, code, level)
    assert (typed.types, typed.levels, typed.scorer) == (from_cli.types, from_cli.levels, from_cli.scorer)
    settings = rbe.Grid(typed, []).cell_settings("gb_2", "gb", 2)
    assert settings["prepare_args"] == ["--detect-every", "5"] and settings["precision"] == "fp32"
    assert settings["perturbation"] == {"seed": 3, "block_rule": "scaled", "storage_crf": 18, "preset": "medium"}


def test_what_the_command_refuses_is_a_grid_error(tmp_path):
    scorer = ScorerSettings(str(tmp_path / "model.pt"))
    with pytest.raises(rbe.GridError, match="list.txt"):
        rbe.run_grid(rbe.GridJob(tmp_path / "list.txt", tmp_path / "w", tmp_path / "r", scorer))
    (tmp_path / "list.txt").write_text("a.mp4 1\na.mp4 0\n")
    with pytest.raises(rbe.GridError, match="more than once"):
        rbe.run_grid(rbe.GridJob(tmp_path / "list.txt", tmp_path / "w", tmp_path / "r", scorer))


def test_prepare_status_records_are_read_with_the_results_reader(tmp_path, monkeypatch):
    roi = tmp_path / "roi"
    (roi / "status").mkdir(parents=True)
    (roi / "status" / "a.json").write_text(json.dumps(
        {"id": "a", "status": "ok", "audio": "audio/a.wav", "tracks": [{"video": "video/a.mp4"}]}))
    asked = []

    def reader(out_dir, item_id):
        asked.append((Path(out_dir), item_id))
        return results.prepare_item_status(out_dir, item_id)

    monkeypatch.setattr(rbe, "prepare_item_status", reader)
    items = [lists.EvalItem("a.mp4", str(tmp_path / "a.mp4"), "", 1, "real"),
             lists.EvalItem("b.mp4", str(tmp_path / "b.mp4"), "", 0, "fake")]
    ok, failed = rbe._roi_items(items, ["a", "b"], roi)
    assert asked == [(roi, "a"), (roi, "b")]
    assert [(i.video, i.audio) for i in ok] == [(str(roi / "video" / "a.mp4"), str(roi / "audio" / "a.wav"))]
    assert [(i.id, error_type) for i, error_type, _ in failed] == [("b.mp4", "PrepareMissing")]
