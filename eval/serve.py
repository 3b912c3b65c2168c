"""``sf-serve``: a local web page to score a video and get its evidence pack.

The analyst uploads a video (or picks one from a configured folder), chooses a checkpoint from
a configured list and follows the job while it is preprocessed and scored; the result page
shows the verdict and the evidence pack (:mod:`.evidence`), with downloads of the pack and of
the JSON record. Example::

    sf-serve --results ~/sf-jobs --checkpoint base=/models/base_lrs3_iter5.pt \\
        --media-dir /cases/videos --reference /cases/reference_set.json
    # then open http://127.0.0.1:8765/

Jobs run in the background, one at a time per device (``--device``, repeatable), in the order
they were submitted; each job keeps its files under ``<results>/<job id>/`` (input, work
folder, ``record.json``, ``evidence.html``) and the page lists them, also after a restart.

Safe by default:

* binds to 127.0.0.1 unless ``--host`` says otherwise;
* uploads larger than ``--max-upload-mb`` are refused, and an upload (or picked file) is only
  accepted when PyAV decodes a video frame from it, whatever its name;
* a picked file must resolve (symbolic links followed) inside ``--media-dir``: absolute paths,
  ``..`` and links that lead out are refused;
* checkpoints come only from the configured list, by name, and are loaded through the safe
  loader (:mod:`sf_fairseq.checkpoint`; no ``--trust-checkpoint`` here);
* every failure gets an error page with a plain message; tracebacks go to the server log only;
* form posts from another origin are refused, and pages carry a content security policy that
  allows no external resource.

Needs the ``serve`` extra (``pip install "sf_fairseq[serve]"``: Flask).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import pickle
import queue
import re
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import av
from flask import (
    Flask,
    Response,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.utils import secure_filename

from sf_fairseq._logging import LOG_FORMAT, command_logging
from sf_fairseq.resume import atomic_write_json

from .evidence import TEMPLATES, TrackEvidence, write_evidence_pack

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 500
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
RECORD, PACK = "record.json", "evidence.html"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'"
)


class RequestRefused(Exception):
    """A request the server will not carry out; ``message`` is shown to the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ServeConfig:
    """What the server may read and use.

    Attributes:
        results_dir: where jobs keep their files.
        checkpoints: checkpoint name -> file; the only checkpoints a job may use.
        media_dir: folder whose videos may be picked (None: uploads only).
        reference: real-only reference set (:class:`.conformal.ReferenceSet` file) for p-values
            and verdicts (None: verdicts are ``inconclusive``, reason ``uncalibrated``).
        devices: one worker per device (``cpu``, ``cuda:0``, ...).
        max_upload_bytes: largest accepted upload.
        layer: transformer block whose output is used (None: final output).
    """

    results_dir: Path
    checkpoints: Mapping[str, Path]
    media_dir: Path | None = None
    reference: Path | None = None
    devices: tuple[str, ...] = ("cpu",)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 2**20
    layer: int | None = None


# ---------------------------------------------------------------------------------------------
# Input checks


def resolve_media(media_dir: Path | None, requested: str) -> Path:
    """The file ``requested`` (a path relative to ``media_dir``, as the form sends it).

    Raises:
        RequestRefused: no media folder, an empty, absolute or ``..`` path, a path that resolves
            (links followed) outside the folder, or no such file.
    """
    if media_dir is None:
        raise RequestRefused(404, "no media folder is configured on this server")
    if not requested or "\0" in requested or "\\" in requested:
        raise RequestRefused(400, "invalid file name")
    relative = Path(requested)
    if relative.is_absolute() or requested.startswith("/") or ".." in relative.parts:
        raise RequestRefused(403, "only files inside the media folder can be picked")
    root = media_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise RequestRefused(403, "only files inside the media folder can be picked")
    if not path.is_file():
        raise RequestRefused(404, f"no such file in the media folder: {requested}")
    return path


def list_media(media_dir: Path | None, limit: int = 2000) -> list[str]:
    """Files in ``media_dir`` (relative paths, sorted) that resolve inside it; hidden files
    and wavs (the audio of ROI videos) left out."""
    if media_dir is None or not media_dir.is_dir():
        return []
    root = media_dir.resolve()
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if name.startswith(".") or path.suffix.lower() == ".wav" or not path.resolve().is_relative_to(root):
                continue
            found.append(path.relative_to(root).as_posix())
            if len(found) >= limit:
                return found
    return found


def check_video(path: Path) -> None:
    """Accept ``path`` only if PyAV finds a video stream in it and decodes a frame.

    Raises:
        RequestRefused: 415, not a decodable video.
    """
    refused = RequestRefused(415, "not a video: no video frame could be decoded from the file")
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise refused
            next(container.decode(video=0))
    except (av.error.FFmpegError, OSError, ValueError, StopIteration) as err:
        raise refused from err


# ---------------------------------------------------------------------------------------------
# Jobs on disk


@dataclass
class Job:
    """One scoring job (``<results>/<id>/job.json``)."""

    id: str
    created: str
    input_name: str
    input_path: str
    source: str  # "upload" or "folder"
    checkpoint: str
    status: str = QUEUED
    stage: str = "waiting for a free device"
    device: str | None = None
    error: str | None = None
    verdict: str | None = None
    score: float | None = None
    reasons: list[str] = field(default_factory=list)
    finished: str | None = None
    submitted_ns: int = 0  # submission order (the queue's)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class JobStore:
    """Job records under ``results_dir``, one folder per job."""

    def __init__(self, results_dir: Path):
        self.root = results_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    def folder(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise RequestRefused(404, "no such job")
        return self.root / job_id

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def save(self, job: Job) -> None:
        with self._lock:
            atomic_write_json(self.folder(job.id) / "job.json", asdict(job))

    def get(self, job_id: str) -> Job:
        try:
            data = json.loads((self.folder(job_id) / "job.json").read_text(encoding="utf-8"))
            return Job(**data)
        except (OSError, ValueError, TypeError) as err:
            raise RequestRefused(404, "no such job") from err

    def update(self, job_id: str, **fields: Any) -> Job:
        with self._lock:
            job = self.get(job_id)
            for name, value in fields.items():
                setattr(job, name, value)
            self.save(job)
        return job

    def all(self) -> list[Job]:
        """Every readable job, newest first."""
        jobs = []
        for folder in self.root.iterdir():
            if JOB_ID.match(folder.name) and (folder / "job.json").is_file():
                try:
                    jobs.append(self.get(folder.name))
                except RequestRefused:
                    logger.warning("%s: unreadable job record, not listed", folder)
        return sorted(jobs, key=lambda j: j.submitted_ns, reverse=True)

    def mark_interrupted(self) -> None:
        """Jobs a previous server left queued or running fail (their worker is gone)."""
        for job in self.all():
            if job.status in (QUEUED, RUNNING):
                self.update(job.id, status=FAILED, error="interrupted: the server stopped before the job finished",
                            finished=_now())


# ---------------------------------------------------------------------------------------------
# Scoring


def score_input(
    scorer: Any,
    checkpoint: Path,
    video: Path,
    work_dir: Path,
    reference: Any,
    set_stage: Callable[[str], None],
    reference_path: Path | None = None,
) -> tuple[dict[str, Any], list[TrackEvidence]]:
    """Score every face track of ``video`` exactly as ``sf-score-video`` does
    (:func:`.video_engine.score_video_tracks`), keeping what the evidence pack needs.

    A ROI-sized video (frames of at most 128 px) is scored as it is with the wav beside it; any
    other video is preprocessed (faces tracked, mouths cropped) first. Each track record gets the
    per-window analysis, the verdict fields (:mod:`.verdict`) and the provenance.

    Args:
        reference: the loaded real-only reference set (None: uncalibrated), read from
            ``reference_path`` (recorded in the provenance with its hash).

    Returns:
        ``(record, tracks)``: the JSON record (``tracks`` inside; the first track gives
        ``verdict``, ``score``, ``p_value``; ``input`` is the file's name only) and one
        :class:`.evidence.TrackEvidence` per track.
    """
    from .video_engine import NoRoiAudio, ScoreVideoError, score_video_tracks
    from .verdict import VerdictConfig

    config = VerdictConfig(reference=reference,
                           reference_path=None if reference_path is None else os.fspath(reference_path))
    try:
        scored = score_video_tracks(scorer, os.fspath(video), work_dir=os.fspath(work_dir), checkpoint=checkpoint,
                                    verdict=config, progress=set_stage)
    except NoRoiAudio as err:  # (the command line's advice names options the page does not have)
        raise ScoreVideoError(f"a mouth-ROI-sized video needs its wav beside it ({Path(video).stem}.wav); "
                              "upload the full-frame video instead") from err
    return {**scored.result, "input": video.name}, scored.tracks


class ScoringProcess:
    """Runs one job: loads the checkpoint (kept per device for the next job), scores the input
    and writes ``record.json`` and ``evidence.html`` into the job folder."""

    def __init__(self, config: ServeConfig):
        from .conformal import ReferenceSet

        self.config = config
        self.reference = ReferenceSet.load(config.reference) if config.reference else None
        self._scorers: dict[str, tuple[str, Any]] = {}  # device -> (checkpoint name, scorer)

    def scorer(self, name: str, device: str) -> Any:
        from .pipeline import load_scorer

        cached = self._scorers.get(device)
        if cached is None or cached[0] != name:
            self._scorers.pop(device, None)  # free the previous model first
            self._scorers[device] = (name, load_scorer(self.config.checkpoints[name], device, self.config.layer))
        return self._scorers[device][1]

    def __call__(self, job: Job, folder: Path, device: str, set_stage: Callable[[str], None]) -> dict[str, Any]:
        set_stage("loading the checkpoint")
        scorer = self.scorer(job.checkpoint, device)
        record, tracks = score_input(scorer, self.config.checkpoints[job.checkpoint], Path(job.input_path),
                                     folder / "work", self.reference, set_stage, self.config.reference)
        record["checkpoint"] = job.checkpoint
        set_stage("writing the evidence pack")
        atomic_write_json(folder / RECORD, record)
        reference = self.reference.scores_for(tracks[0].record) if self.reference else None
        field_name = self.reference.score_field if self.reference else "score"
        write_evidence_pack(folder / PACK, tracks, title=job.input_name, reference=reference,
                            reference_field=field_name)
        return record


# Errors whose message is meant for the user (bad input, unreadable media, unsafe checkpoint).
USER_ERRORS = (OSError, ValueError, RuntimeError, pickle.UnpicklingError)


class Workers:
    """One background thread per device taking jobs from one queue, in submission order."""

    def __init__(self, store: JobStore, devices: Sequence[str],
                 process: Callable[[Job, Path, str, Callable[[str], None]], dict[str, Any]]):
        self.store = store
        self.process = process
        self.jobs: queue.Queue[str] = queue.Queue()
        self.threads = [threading.Thread(target=self._loop, args=(device,), name=f"sf-serve-{device}", daemon=True)
                        for device in devices]
        for thread in self.threads:
            thread.start()

    def submit(self, job_id: str) -> None:
        self.jobs.put(job_id)

    def _loop(self, device: str) -> None:
        while True:
            self.run(self.jobs.get(), device)
            self.jobs.task_done()

    def run(self, job_id: str, device: str) -> None:
        job = self.store.update(job_id, status=RUNNING, device=device, stage="starting")

        def set_stage(stage: str) -> None:
            self.store.update(job_id, stage=stage)

        try:
            record = self.process(job, self.store.folder(job_id), device, set_stage)
        except USER_ERRORS as err:
            logger.warning("job %s failed: %s: %s", job_id, type(err).__name__, err)
            self.store.update(job_id, status=FAILED, stage="failed", error=f"{type(err).__name__}: {err}",
                              finished=_now())
            return
        except Exception:  # a worker must survive any job
            logger.exception("job %s failed", job_id)
            self.store.update(job_id, status=FAILED, stage="failed",
                              error="internal error while scoring (details are in the server log)",
                              finished=_now())
            return
        self.store.update(job_id, status=DONE, stage="done", verdict=record.get("verdict"),
                          score=record.get("score"), reasons=list(record.get("reasons") or []), finished=_now())


# ---------------------------------------------------------------------------------------------
# Web application


def create_app(config: ServeConfig, process: Callable[..., dict[str, Any]] | None = None) -> Flask:
    """The Flask application; ``process`` runs a job (default :class:`ScoringProcess`)."""
    app = Flask(__name__, template_folder=os.fspath(TEMPLATES))
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    store = JobStore(config.results_dir)
    store.mark_interrupted()
    workers = Workers(store, config.devices, process or ScoringProcess(config))
    app.extensions["sf_serve"] = {"store": store, "workers": workers, "config": config}

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Referrer-Policy"] = "same-origin"  # no-referrer would make form posts Origin: null
        return response

    @app.before_request
    def same_origin_posts() -> None:
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
                raise RequestRefused(403, "form posted from another site")

    @app.errorhandler(RequestRefused)
    def refused(err: RequestRefused) -> tuple[str, int]:
        return render_template("serve_error.html", status=err.status, message=err.message), err.status

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> tuple[str, int]:
        message = err.description
        if err.code == 413:
            message = f"the upload is larger than this server accepts ({config.max_upload_bytes / 2**20:g} MB)"
        return render_template("serve_error.html", status=err.code, message=message), err.code

    @app.errorhandler(Exception)
    def internal_error(err: Exception) -> tuple[str, int]:
        logger.exception("request failed")
        return render_template("serve_error.html", status=500,
                               message="internal error (details are in the server log)"), 500

    def finished_job(job_id: str) -> tuple[Job, Path]:
        job = store.get(job_id)
        if job.status != DONE:
            raise RequestRefused(409, "the job has not finished")
        return job, store.folder(job_id)

    @app.get("/")
    def index() -> str:
        return render_template("serve_index.html", checkpoints=sorted(config.checkpoints),
                               media=list_media(config.media_dir), has_media=config.media_dir is not None,
                               jobs=store.all(), max_mb=config.max_upload_bytes / 2**20)

    @app.post("/jobs")
    def submit() -> Response:
        name = request.form.get("checkpoint", "")
        if name not in config.checkpoints:
            raise RequestRefused(400, "choose one of the configured checkpoints")
        upload = request.files.get("video")
        picked = request.form.get("media", "")
        if (upload is not None and bool(upload.filename)) == bool(picked):
            raise RequestRefused(400, "upload a video or pick one from the folder (one of the two)")
        job_id = store.new_id()
        folder = store.folder(job_id)
        if picked:
            path, source, shown = resolve_media(config.media_dir, picked), "folder", picked
            check_video(path)
            folder.mkdir()
        else:
            stem = secure_filename(upload.filename) or "upload"
            path, source, shown = folder / "input" / stem, "upload", upload.filename
            path.parent.mkdir(parents=True)
            upload.save(path)
            try:
                check_video(path)
            except RequestRefused:
                shutil.rmtree(folder)
                raise
        store.save(Job(id=job_id, created=_now(), input_name=shown, input_path=os.fspath(path), source=source,
                       checkpoint=name, submitted_ns=time.time_ns()))
        workers.submit(job_id)
        return redirect(url_for("job_page", job_id=job_id), code=303)

    @app.get("/jobs/<job_id>")
    def job_page(job_id: str) -> str:
        job = store.get(job_id)
        return render_template("serve_job.html", job=job, position=queue_position(job))

    def queue_position(job: Job) -> int | None:
        if job.status != QUEUED:
            return None
        waiting = [j.id for j in reversed(store.all()) if j.status == QUEUED]
        return waiting.index(job.id) + 1 if job.id in waiting else None  # it may have just started

    @app.get("/jobs/<job_id>/status")
    def job_status(job_id: str) -> Response:
        job = store.get(job_id)
        return jsonify({"id": job.id, "status": job.status, "stage": job.stage, "error": job.error,
                        "verdict": job.verdict, "queue_position": queue_position(job)})

    @app.get("/jobs/<job_id>/evidence")
    def evidence(job_id: str) -> Response:
        _, folder = finished_job(job_id)
        return send_file(folder / PACK, mimetype="text/html")

    @app.get("/jobs/<job_id>/download/<what>")
    def download(job_id: str, what: str) -> Response:
        job, folder = finished_job(job_id)
        files = {"evidence": (PACK, "text/html", "evidence.html"), "record": (RECORD, "application/json", "score.json")}
        if what not in files:
            raise RequestRefused(404, "no such download")
        name, mimetype, suffix = files[what]
        stem = Path(secure_filename(job.input_name) or "video").stem
        return send_file(folder / name, mimetype=mimetype, as_attachment=True, download_name=f"{stem}.{suffix}")

    return app


# ---------------------------------------------------------------------------------------------
# Command line


def checkpoint_option(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` (or ``PATH``, named after its file) -> ``(name, path)``."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).stem, text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sf-serve",
        description="Local web page: upload or pick a video, score it with a configured checkpoint, "
        "see and download its evidence pack.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--results", required=True, help="folder where jobs keep their files")
    p.add_argument("--checkpoint", action="append", type=checkpoint_option, required=True,
                   metavar="NAME=PATH", help="a checkpoint the page offers (repeatable)")
    p.add_argument("--media-dir", help="folder whose videos can be picked on the page (default: uploads only)")
    p.add_argument("--reference", help="real-only reference set (p-values and verdicts; default: uncalibrated)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (anything but 127.0.0.1 exposes the page to the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    p.add_argument("--device", action="append", dest="devices",
                   help="device to score on, one job at a time each (repeatable; default: cpu)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest accepted upload")
    p.add_argument("--layer", type=int, default=None, help="transformer block whose output is used (default: final)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        checkpoints = dict(args.checkpoint)
        missing = [f"{n}={p}" for n, p in checkpoints.items() if not p.is_file()]
        if missing:
            raise SystemExit(f"error: checkpoint file(s) not found: {', '.join(missing)}")
        if args.media_dir and not Path(args.media_dir).is_dir():
            raise SystemExit(f"error: media folder not found: {args.media_dir}")
        config = ServeConfig(
            results_dir=Path(args.results), checkpoints=checkpoints,
            media_dir=Path(args.media_dir) if args.media_dir else None,
            reference=Path(args.reference) if args.reference else None,
            devices=tuple(args.devices or ["cpu"]), max_upload_bytes=int(args.max_upload_mb * 2**20), layer=args.layer,
        )
        try:
            app = create_app(config)
        except ValueError as err:  # unreadable reference set
            raise SystemExit(f"error: {err}") from err
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("listening on %s: anyone who can reach this address can use the page", args.host)
        from werkzeug.serving import make_server

        server = make_server(args.host, args.port, app, threaded=True)
        print(f"sf-serve: open http://{args.host}:{server.server_port}/ (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
