"""sf-serve with Flask's test client: uploads, folder picks, refusals, the job queue, downloads."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import check_self_contained
from sf_fairseq.eval import serve
from sf_fairseq.eval.serve import ServeConfig, create_app
from sf_test_media import write_clip

TINY = "tiny"


def wait_for(client, job_id: str, statuses=("done", "failed"), timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}/status").get_json()
        if status["status"] in statuses:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {status}")


class FakeProcess:
    """Stands in for the scorer: writes a record and a pack; can be held to test the queue."""

    def __init__(self, hold: bool = False, error: Exception | None = None):
        self.calls: list[str] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.error = error

    def __call__(self, job, folder: Path, device: str, set_stage) -> dict:
        self.calls.append(job.input_name)
        set_stage("scoring")
        self.release.wait(30)
        if self.error is not None:
            raise self.error
        record = {"verdict": "inconclusive", "reasons": ["uncalibrated"], "score": 0.25, "input": job.input_name}
        (folder / serve.RECORD).write_text(json.dumps(record), encoding="utf-8")
        (folder / serve.PACK).write_text("<!DOCTYPE html><title>pack</title><p>evidence</p>", encoding="utf-8")
        return record


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A media folder with a ROI clip (and its wav), a sub-folder, a text file, a link out."""
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    write_clip(folder / "clip.mp4", folder / "clip.wav", 30, np.random.default_rng(0))
    write_clip(folder / "sub" / "other.mp4", folder / "sub" / "other.wav", 30, np.random.default_rng(1))
    (folder / "notes.mp4").write_text("not a video", encoding="utf-8")
    write_clip(tmp_path / "secret.mp4", tmp_path / "secret.wav", 30, np.random.default_rng(2))
    (folder / "link_out.mp4").symlink_to(tmp_path / "secret.mp4")
    (folder / "dir_out").symlink_to(tmp_path, target_is_directory=True)
    return folder


def make_app(tmp_path: Path, media: Path | None, process, **config):
    cfg = ServeConfig(results_dir=tmp_path / "results", checkpoints={TINY: tmp_path / "tiny.pt"}, media_dir=media,
                      **config)
    app = create_app(cfg, process)
    return app, app.test_client()


def video_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "upload_src" / "talk.mp4"
    path.parent.mkdir(exist_ok=True)
    write_clip(path, path.with_suffix(".wav"), 30, np.random.default_rng(3))
    return path.read_bytes()


def assert_error_page(response, status: int, text: str) -> None:
    assert response.status_code == status
    body = response.get_data(as_text=True)
    assert text in body, body
    assert "Traceback" not in body and 'File "' not in body


def test_upload_scores_and_offers_downloads(tmp_path, media):
    process = FakeProcess()
    _, client = make_app(tmp_path, media, process)
    page = client.get("/")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    html = page.get_data(as_text=True)
    assert TINY in html and "clip.mp4" in html and "sub/other.mp4" in html
    assert "link_out.mp4" not in html and "dir_out" not in html and "clip.wav" not in html
    upload = (io.BytesIO(video_bytes(tmp_path)), "my talk.mp4")
    response = client.post("/jobs", data={"checkpoint": TINY, "video": upload}, content_type="multipart/form-data")
    assert response.status_code == 303
    job_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert wait_for(client, job_id)["status"] == "done"
    assert process.calls == ["my talk.mp4"]
    job_page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "inconclusive" in job_page and "download/evidence" in job_page and "download/record" in job_page
    pack = client.get(f"/jobs/{job_id}/download/evidence")
    assert pack.status_code == 200 and "attachment" in pack.headers["Content-Disposition"]
    assert "my_talk.evidence.html" in pack.headers["Content-Disposition"]
    record = client.get(f"/jobs/{job_id}/download/record")
    assert record.get_json()["score"] == 0.25 and "attachment" in record.headers["Content-Disposition"]
    assert client.get(f"/jobs/{job_id}/evidence").mimetype == "text/html"
    assert "my talk.mp4" in client.get("/").get_data(as_text=True)  # listed


def test_pick_from_folder(tmp_path, media):
    process = FakeProcess()
    _, client = make_app(tmp_path, media, process)
    response = client.post("/jobs", data={"checkpoint": TINY, "media": "sub/other.mp4"})
    assert response.status_code == 303
    job_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert wait_for(client, job_id)["status"] == "done"
    assert process.calls == ["sub/other.mp4"]


@pytest.mark.parametrize("requested, status", [
    ("../secret.mp4", 403),
    ("sub/../../secret.mp4", 403),
    ("/etc/passwd", 403),
    ("link_out.mp4", 403),            # a symbolic link leading out
    ("dir_out/secret.mp4", 403),       # through a linked folder
    ("..\\secret.mp4", 400),
    ("clip.mp4\0", 400),
    ("missing.mp4", 404),
])
def test_folder_traversal_is_refused(tmp_path, media, requested, status):
    process = FakeProcess()
    _, client = make_app(tmp_path, media, process)
    assert_error_page(client.post("/jobs", data={"checkpoint": TINY, "media": requested}), status, "Error")
    assert process.calls == []


def test_absolute_and_encoded_paths_are_refused(tmp_path, media):
    process = FakeProcess()
    _, client = make_app(tmp_path, media, process)
    for raw in (f"media={tmp_path / 'secret.mp4'}", "media=%2e%2e%2fsecret.mp4", "media=%2E%2E/secret.mp4",
                "media=sub%2f..%2f..%2fsecret.mp4"):
        response = client.post("/jobs", data=f"checkpoint={TINY}&{raw}",
                               content_type="application/x-www-form-urlencoded")
        assert_error_page(response, 403, "only files inside the media folder")
    # a doubly encoded form stays a (missing) name inside the folder
    response = client.post("/jobs", data=f"checkpoint={TINY}&media=%252e%252e%252fsecret.mp4",
                           content_type="application/x-www-form-urlencoded")
    assert_error_page(response, 404, "no such file in the media folder")
    assert process.calls == []


def test_non_video_is_refused_by_decoding(tmp_path, media):
    process = FakeProcess()
    _, client = make_app(tmp_path, media, process)
    response = client.post("/jobs", data={"checkpoint": TINY, "video": (io.BytesIO(b"\x00" * 5000 + b"moov"), "x.mp4")},
                           content_type="multipart/form-data")
    assert_error_page(response, 415, "not a video")
    wav = (media / "clip.wav").read_bytes()  # a real media file, but no video stream
    response = client.post("/jobs", data={"checkpoint": TINY, "video": (io.BytesIO(wav), "x.mp4")},
                           content_type="multipart/form-data")
    assert_error_page(response, 415, "not a video")
    assert_error_page(client.post("/jobs", data={"checkpoint": TINY, "media": "notes.mp4"}), 415, "not a video")
    assert process.calls == [] and not any((tmp_path / "results").iterdir())


def test_upload_size_limit(tmp_path, media):
    process = FakeProcess()
    _, client = make_app(tmp_path, media, process, max_upload_bytes=4096)
    response = client.post("/jobs", data={"checkpoint": TINY, "video": (io.BytesIO(b"x" * 20000), "big.mp4")},
                           content_type="multipart/form-data")
    assert_error_page(response, 413, "larger than this server accepts")
    assert process.calls == []


def test_only_configured_checkpoints_and_one_input(tmp_path, media):
    process = FakeProcess()
    _, client = make_app(tmp_path, media, process)
    assert_error_page(client.post("/jobs", data={"checkpoint": "/etc/passwd", "media": "clip.mp4"}), 400,
                      "configured checkpoints")
    assert_error_page(client.post("/jobs", data={"checkpoint": TINY}), 400, "one of the two")
    assert process.calls == []


def test_jobs_run_one_at_a_time_in_order(tmp_path, media):
    process = FakeProcess(hold=True)
    _, client = make_app(tmp_path, media, process)
    ids = []
    for name in ("clip.mp4", "sub/other.mp4"):
        location = client.post("/jobs", data={"checkpoint": TINY, "media": name}).headers["Location"]
        ids.append(location.rsplit("/", 1)[-1])
    wait_for(client, ids[0], statuses=("running",))
    second = client.get(f"/jobs/{ids[1]}/status").get_json()
    assert second["status"] == "queued" and second["queue_position"] == 1
    assert "position 1 in the queue" in client.get(f"/jobs/{ids[1]}").get_data(as_text=True)
    process.release.set()
    assert [wait_for(client, i)["status"] for i in ids] == ["done", "done"]
    assert process.calls == ["clip.mp4", "sub/other.mp4"]


def test_failures_show_messages_never_tracebacks(tmp_path, media):
    _, client = make_app(tmp_path, media, FakeProcess(error=ValueError("audio is not 16 kHz mono")))
    job_id = client.post("/jobs", data={"checkpoint": TINY, "media": "clip.mp4"}).headers["Location"].rsplit("/", 1)[-1]
    assert wait_for(client, job_id)["status"] == "failed"
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "ValueError: audio is not 16 kHz mono" in page
    assert_error_page(client.get(f"/jobs/{job_id}/download/record"), 409, "has not finished")

    _, client = make_app(tmp_path / "b", media, FakeProcess(error=KeyError("secret internals")))
    job_id = client.post("/jobs", data={"checkpoint": TINY, "media": "clip.mp4"}).headers["Location"].rsplit("/", 1)[-1]
    assert wait_for(client, job_id)["status"] == "failed"
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "internal error" in page and "secret internals" not in page
    assert_error_page(client.get("/jobs/not-a-job"), 404, "no such job")
    assert_error_page(client.get("/jobs/../../etc/passwd"), 404, "Error")
    assert_error_page(client.get(f"/jobs/{job_id}/download/secret"), 409, "has not finished")


def test_cross_site_post_and_restart(tmp_path, media):
    process = FakeProcess(hold=True)
    _, client = make_app(tmp_path, media, process)
    assert_error_page(client.post("/jobs", data={"checkpoint": TINY, "media": "clip.mp4"},
                                  headers={"Origin": "http://evil.example"}), 403, "another site")
    job_id = client.post("/jobs", data={"checkpoint": TINY, "media": "clip.mp4"},
                         headers={"Origin": "http://localhost"}).headers["Location"].rsplit("/", 1)[-1]
    wait_for(client, job_id, statuses=("running",))
    # a new server on the same results folder: the old worker is gone
    _, client2 = make_app(tmp_path, media, FakeProcess())
    status = client2.get(f"/jobs/{job_id}/status").get_json()
    assert status["status"] == "failed" and "interrupted" in status["error"]
    process.release.set()


def test_command_line_defaults_are_safe():
    args = serve.build_parser().parse_args(["--results", "r", "--checkpoint", "base=/m/base.pt"])
    assert args.host == "127.0.0.1" and args.checkpoint == [("base", Path("/m/base.pt"))]
    with pytest.raises(SystemExit, match="not found"):
        serve.main(["--results", "r", "--checkpoint", "base=/nonexistent/base.pt"])


@pytest.mark.slow
def test_real_scoring_with_the_tiny_checkpoint(tmp_path, media, shared_dir):
    cfg = ServeConfig(results_dir=tmp_path / "results",
                      checkpoints={TINY: shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"}, media_dir=media)
    client = create_app(cfg).test_client()
    job_id = client.post("/jobs", data={"checkpoint": TINY, "media": "clip.mp4"}).headers["Location"].rsplit("/", 1)[-1]
    status = wait_for(client, job_id, timeout=300)
    assert status["status"] == "done", status
    record = client.get(f"/jobs/{job_id}/download/record").get_json()
    assert record["input_kind"] == "roi" and record["verdict"] == "inconclusive"
    assert "uncalibrated" in record["reasons"]
    track = record["tracks"][0]
    assert track["provenance"]["checkpoint_sha256"] and len(track["curve"]) == 31
    pack = client.get(f"/jobs/{job_id}/evidence").get_data(as_text=True)
    page = check_self_contained(pack)
    assert len(page.images) == 3  # curve, time line, frame strip (no reference set)


@pytest.mark.slow
def test_a_video_without_a_face_gives_an_inconclusive_record(tmp_path, shared_dir):
    """The page scores through sf-score-video's function: a raw video without a face is a record
    (inconclusive, no_face) with its pack, not a failed job."""
    import cv2

    path = tmp_path / "noise.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (200, 200))
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.write(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    writer.release()
    cfg = ServeConfig(results_dir=tmp_path / "results",
                      checkpoints={TINY: shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"})
    client = create_app(cfg).test_client()
    response = client.post("/jobs", data={"checkpoint": TINY, "video": (io.BytesIO(path.read_bytes()), "noise.mp4")})
    job_id = response.headers["Location"].rsplit("/", 1)[-1]
    status = wait_for(client, job_id, timeout=300)
    assert status["status"] == "done", status
    record = client.get(f"/jobs/{job_id}/download/record").get_json()
    assert record["input"] == "noise.mp4" and record["input_kind"] == "raw"
    assert record["verdict"] == "inconclusive" and record["reasons"] == ["no_face"] and record["score"] is None
    assert record["tracks"][0]["provenance"]["checkpoint_sha256"]
    page = check_self_contained(client.get(f"/jobs/{job_id}/evidence").get_data(as_text=True))
    assert "no_face" in " ".join(page.text)
