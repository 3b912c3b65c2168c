"""sf-score-ray: raw videos scored as one Ray Data pipeline give the records of sf-prepare +
sf-score-batch (scores and verdicts); failures are records; reruns resume; a worker that dies is
replaced and its item retried. One local Ray for the whole module."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import ray
from ray_media import crashing_stage, write_talking_faces

from sf_fairseq.eval import ray_pipeline, score_batch, score_ray
from sf_fairseq.eval.conformal import ReferenceSet
from sf_fairseq.data.batching import BatchLimits
from sf_fairseq.eval.results import latest_records
from sf_fairseq.eval.verdict import VERDICT_FIELDS
from sf_fairseq.preprocess import prepare, prepare_engine
from sf_fairseq.resume import file_sha256

pytestmark = pytest.mark.slow

FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, object_store_memory=256 * 1024 * 1024, include_dashboard=False,
             logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_talking_faces(folder)
    return folder


@pytest.fixture(scope="module")
def verdict_args(tmp_path_factory) -> list[str]:
    """Verdict options both paths get: a tiny reference set for real clips only (so the real
    clip gets a p-value and a verdict, the dubbed one 'reference_group_missing')."""
    path = tmp_path_factory.mktemp("reference") / "reference.json"
    ReferenceSet("score_speech", "category", {"real": [0.1, 0.2, 0.3]}).save(path)
    return ["--reference", str(path), "--alpha", "0.3", "--min-speech-seconds", "0.5"]


@pytest.fixture(scope="module")
def two_step(tmp_path_factory, videos: Path, shared_dir: Path, verdict_args: list[str]) -> dict[str, dict]:
    """Records of sf-prepare then sf-score-batch on the same videos (float32 pinned here and in the Ray
    runs: `auto` is bf16 on a CPU that runs it natively, and the paths are compared to 1e-6)."""
    work = tmp_path_factory.mktemp("two_step")
    assert prepare.main([str(videos), str(work / "prepared")]) == 1  # the broken file
    assert score_batch.main([str(work / "prepared"), "--gen-subset", "test", "--path", str(shared_dir / FIXTURE),
                             "--results-path", str(work / "scores"), "--cpu", "--precision", "fp32",
                             "--num-workers", "0", "--no-progress", *verdict_args]) == 0
    return latest_records([work / "scores"])


def test_scores_equal_the_two_step_path_and_reruns_resume(local_ray, videos, two_step, verdict_args, shared_dir,
                                                          tmp_path):
    out = tmp_path / "scores"
    labels = tmp_path / "test_list.txt"
    labels.write_text("real/a.mp4 1\ndubbed/a.mp4 0\n", encoding="utf-8")
    args = [str(videos), "--path", str(shared_dir / FIXTURE), "--results-path", str(out), "--cpu", "--no-progress",
            "--precision", "fp32", "--labels", str(labels), *verdict_args]
    assert score_ray.main(args + ["--roi-dir", str(tmp_path / "rois")]) == 1  # the broken file

    records = latest_records([out])
    assert set(records) == {"real/a", "dubbed/a", "broken/b"}
    assert set(two_step) == {"real/a", "dubbed/a"}
    for item_id, expected in two_step.items():
        got = records[item_id]
        assert got["status"] == "ok"
        # The same scored files first (so that a score mismatch below is one of scoring, not of
        # preprocessing): the ROI video and the audio, byte for byte.
        for role in ("video", "audio"):
            assert got["provenance"]["files"][role]["sha256"] == expected["provenance"]["files"][role]["sha256"], role
        assert got["score"] == pytest.approx(expected["score"], abs=1e-6)
        assert got["curve"] == pytest.approx(expected["curve"], abs=1e-6)
        assert (got["best_offset"], got["n_frames"], got["category"]) == (
            expected["best_offset"], expected["n_frames"], expected["category"])
        assert got["track"] == {"input": item_id, "index": 0, "count": 1}
        assert set(got.to_dict()) == set(expected.to_dict()) | {"track"}  # the records of sf-score-batch
        # The same verdicts: speech analysis, face and stream checks, drift, reasons.
        assert "face" in expected
        for field in (*VERDICT_FIELDS, "face"):
            assert_close(got[field], expected[field], field)
        # Provenance: the checkpoint and every setting as sf-score-batch records them; the raw
        # video as the input, the ROI and wav kept under --roi-dir as the scored files.
        prov, expected_prov = got["provenance"], expected["provenance"]
        assert set(prov) == set(expected_prov)
        for key in ("checkpoint", "checkpoint_sha256", "layer", "settings", "verdict_settings", "drift_settings",
                    "reference_set", "precision"):
            assert prov[key] == expected_prov[key], key
        assert prov["input_sha256"] == file_sha256(videos / f"{item_id}.mp4")
        assert prov["files"]["video"]["path"] == str(tmp_path / "rois" / "video" / f"{item_id}.mp4")
        for role in ("video", "audio"):
            assert prov["files"][role]["sha256"] == file_sha256(prov["files"][role]["path"])
    assert (records["real/a"]["label"], records["dubbed/a"]["label"], records["broken/b"]["label"]) == (1, 0, None)
    assert records["real/a"]["p_value"] is not None and records["real/a"]["verdict"] in ("real", "fake")
    # The dubbed clip's category has no group in the reference set. Its other reasons (an offset
    # at the search window's edge, ...) depend on the synthetic media; the loop above compares
    # them with the two-step path's.
    assert "reference_group_missing" in records["dubbed/a"]["reasons"]
    broken = records["broken/b"]
    assert (broken["status"], broken["error_type"], broken["track"]) == ("failed", "unreadable", None)
    assert all(broken[field] is None for field in (*VERDICT_FIELDS, "provenance"))
    # ROIs were asked for: laid out as sf-prepare writes them, with a manifest of the scored ones.
    assert (tmp_path / "rois" / "video" / "real" / "a.mp4").is_file()
    assert len((tmp_path / "rois" / "test.tsv").read_text().splitlines()) == 3

    # A rerun skips the scored inputs and retries the failed one.
    n_lines = len((out / "scores.jsonl").read_text().splitlines())
    assert score_ray.main(args + ["--roi-dir", str(tmp_path / "rois")]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["skipped"], summary["failed"], summary["scored"]) == (2, 1, 0)
    assert len((out / "scores.jsonl").read_text().splitlines()) == n_lines + 1

    # Other settings are refused, naming them; nothing is scored.
    assert score_ray.main(args + ["--max-offset", "10"]) == 2
    assert score_ray.main(args + ["--detect-every", "5"]) == 2
    assert score_ray.main(args + ["--alpha", "0.1"]) == 2
    assert score_ray.main(args + ["--vad-threshold", "0.3"]) == 2
    assert len((out / "scores.jsonl").read_text().splitlines()) == n_lines + 1


def test_a_killed_worker_is_replaced_and_its_item_retried(local_ray, videos, two_step, shared_dir, tmp_path):
    checkpoint = str(shared_dir / FIXTURE)
    scorer_args = score_ray.build_parser().parse_args([str(videos), "--path", checkpoint, "--results-path",
                                                       str(tmp_path), "--cpu", "--precision", "fp32"])
    scorer = score_ray.load_scorer_from_arguments(scorer_args, checkpoint, "cpu")
    settings = ray_pipeline.StageSettings(prepare_engine.PrepareOptions(), scorer.settings, scorer.options)
    plan = ray_pipeline.WorkerPlan(cpu_workers=1, model_workers=1, model_gpus=0, model_cpus=1, max_retries=1)
    items = [it for it in ray_pipeline.read_videos(videos) if it.id in ("real/a", "dubbed/a")]
    marker = tmp_path / "crashed"
    stage = crashing_stage(marker, poison="dubbed/a")

    records = latest_records_of(ray_pipeline.run_pipeline(items, settings, scorer_args, "fp32", BatchLimits(),
                                                          plan, prepare_stage=stage))
    assert marker.exists()  # a worker died on real/a once ...
    assert records["real/a"]["status"] == "ok"  # ... and the item was retried on its replacement
    # The ROI was not kept: hashed, no path; the same bytes as the two-step path's, video and audio
    # (checked before the score, so that a mismatch there is one of scoring).
    files, expected_files = records["real/a"]["provenance"]["files"], two_step["real/a"]["provenance"]["files"]
    for role in ("video", "audio"):
        assert files[role]["path"] is None and files[role]["sha256"] == expected_files[role]["sha256"], role
    assert records["real/a"]["score"] == pytest.approx(two_step["real/a"]["score"], abs=1e-6)
    # Default verdict settings, no reference set.
    assert (records["real/a"]["verdict"], records["real/a"]["reasons"]) == (
        "inconclusive", ["too_little_speech", "uncalibrated"])
    # An input that kills its worker on every try fails alone.
    assert (records["dubbed/a"]["status"], records["dubbed/a"]["error_type"]) == ("failed", "WorkerLost")
    assert len(records) == 2


def latest_records_of(records) -> dict[str, dict]:
    return {record["id"]: record for record in records}


def assert_close(got, expected, where: str) -> None:
    """``got == expected``, floats within 1e-6 (the model batches differ between the paths)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), where
        for key in expected:
            assert_close(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_close(g, e, f"{where}[{i}]")
    elif isinstance(expected, float) and isinstance(got, float):
        assert got == pytest.approx(expected, abs=1e-6, nan_ok=True), where
    else:
        assert got == expected, where
