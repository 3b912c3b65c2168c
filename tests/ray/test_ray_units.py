"""Parts of sf-score-ray that need no Ray: worker sizing, inputs and labels, what a rerun skips."""

import os
from dataclasses import replace

from sf_fairseq.eval.ray_pipeline import VideoItem, finished_inputs, plan_workers, read_videos
from sf_fairseq.eval.results import input_stamps
from sf_fairseq.records import ScoreRecord


def test_model_workers_per_gpu_and_the_other_cpus_preprocess():
    gpus = plan_workers(32, 2, None, None, None, use_gpu=True)
    assert (gpus.cpu_workers, gpus.model_workers, gpus.model_cpus, gpus.model_gpus) == (30, 2, 1, 1.0)
    cpu_only = plan_workers(16, 0, None, None, None, use_gpu=True)
    assert (cpu_only.cpu_workers, cpu_only.model_workers, cpu_only.model_cpus, cpu_only.model_gpus) == (8, 1, 8, 0)
    forced_cpu = plan_workers(16, 2, None, None, None, use_gpu=False)
    assert (forced_cpu.model_workers, forced_cpu.model_gpus) == (1, 0)
    assert plan_workers(2, 0, None, None, None, use_gpu=True).cpu_workers == 1
    given = plan_workers(16, 0, 3, 2, 4, use_gpu=True)
    assert (given.cpu_workers, given.model_workers, given.model_gpus, given.model_cpus) == (3, 2, 0, 4)


def test_inputs_are_named_as_sf_prepare_names_them_and_labels_come_from_a_list(tmp_path):
    for rel in ("real/a.mp4", "fake/Deepfakes/b.mp4", "fake/Deepfakes/b.mkv", "c.mp4"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(b"")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,category\nreal/a.mp4,1,\nc.mp4,0,lipsync\n", encoding="utf-8")
    items = {item.id: item for item in read_videos(tmp_path / "in", labels=labels)}
    assert set(items) == {"real/a", "fake/Deepfakes/b.mp4", "fake/Deepfakes/b.mkv", "c"}
    assert (items["real/a"].label, items["real/a"].category) == (1, "real")
    assert (items["c"].label, items["c"].category) == (0, "lipsync")
    # Not in the labels: no label, the category from the id.
    assert (items["fake/Deepfakes/b.mkv"].label, items["fake/Deepfakes/b.mkv"].category) == (None, "Deepfakes")
    assert items["c"].path == os.path.realpath(tmp_path / "in" / "c.mp4")
    # Nothing from the output folders (e.g. ROIs kept inside the input folder).
    (tmp_path / "in" / "rois" / "video").mkdir(parents=True)
    (tmp_path / "in" / "rois" / "video" / "c.mp4").write_bytes(b"")
    assert {item.id for item in read_videos(tmp_path / "in", exclude=[tmp_path / "in" / "rois"])} == set(items)


def test_an_input_is_finished_when_every_track_is_scored_from_the_same_file(tmp_path):
    video = tmp_path / "two_faces.mp4"
    video.write_bytes(b"x")
    item = VideoItem("two_faces", str(video))
    stamps = input_stamps(video, video)

    def record(index, status="ok", inputs=stamps):
        return ScoreRecord.from_dict({"id": f"two_faces__track{index}", "status": status, "inputs": inputs,
                                      "track": {"input": "two_faces", "index": index, "count": 2}})

    both = {r.id: r for r in (record(0), record(1))}
    assert finished_inputs([item], both) == {"two_faces"}
    assert finished_inputs([item], {"two_faces__track0": record(0)}) == set()  # a track missing
    assert finished_inputs([item], {**both, "two_faces__track1": record(1, "failed")}) == set()
    changed = {k: replace(r, inputs={"video": None, "audio": None}) for k, r in both.items()}
    assert finished_inputs([item], changed) == set()  # the file changed since
    failed_input = {"two_faces": ScoreRecord.from_dict({"id": "two_faces", "status": "failed", "inputs": stamps,
                                                        "track": None})}
    assert finished_inputs([item], failed_input) == set()


def test_an_input_prepare_finds_nothing_to_judge_in_is_inconclusive_with_that_reason(tmp_path):
    from sf_fairseq.eval.ray_pipeline import input_failed_record
    from sf_fairseq.eval.verdict import VERDICT_FIELDS

    video = tmp_path / "a.mp4"
    video.write_bytes(b"x")
    item = VideoItem("a", str(video))
    for status, reason in (("no_face", "no_face"), ("no_audio", "no_audio"), ("too_short", "clip_too_short")):
        record = input_failed_record(item, status, "why")
        assert (record["status"], record["error_type"], record["track"]) == ("failed", status, None)
        assert (record["verdict"], record["reasons"]) == ("inconclusive", [reason])
        assert all(record[f] is None for f in VERDICT_FIELDS if f not in ("verdict", "reasons"))
        assert record["provenance"] is None
    # Other failures (an unreadable file, a lost worker) have no verdict.
    for error_type in ("unreadable", "WorkerLost"):
        record = input_failed_record(item, error_type, "why")
        assert all(record[f] is None for f in (*VERDICT_FIELDS, "provenance"))


def test_model_workers_run_the_precision_the_driver_resolved(shared_dir, restore_torch_threads):
    """``auto`` is resolved once on the driver; a worker whose own device would pick another
    precision (fp32 on this AVX2 host, bf16 on a bf16 GPU) runs the driver's, not its own."""
    import argparse

    from sf_fairseq.data.batching import BatchLimits
    from sf_fairseq.eval.pipeline import add_scorer_arguments
    from sf_fairseq.eval.ray_pipeline import ScoreStage

    parser = argparse.ArgumentParser()
    add_scorer_arguments(parser)
    args = parser.parse_args(["--path", str(shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt")])
    assert args.precision == "auto"
    stage = ScoreStage(args, "cpu", BatchLimits(2, None, 0.2), "bf16", threads=1)
    assert stage.scorer.encoder.precision == "bf16"
