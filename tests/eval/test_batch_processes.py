"""sf-score-batch as a process: a second run on the same output is refused, and a killed or
terminated run leaves no loader process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sf_fairseq import resume
from sf_fairseq.eval import batch_engine, score_batch

FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def long_list(tmp_path: Path, roi_clip) -> Path:
    """Many items (two clips listed under many ids): a run that lasts long enough to be stopped."""
    root = tmp_path / "mouths"
    roi_clip(root / "a.mp4", n_frames=20, seed=0)
    roi_clip(root / "b.mp4", n_frames=20, seed=1)
    listing = tmp_path / "list.csv"
    rows = [f"{'ab'[i % 2]}.mp4,{i % 2},,,item{i}" for i in range(400)]
    listing.write_text("path,label,category,audio,id\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return listing


def _command(listing: Path, out: Path, shared_dir: Path) -> list[str]:
    return [sys.executable, "-m", "sf_fairseq.eval.score_batch", "--path", str(shared_dir / FIXTURE),
            "--list", str(listing), "--data-root", str(listing.parent / "mouths"), "--results-path", str(out),
            "--cpu", "--no-progress", "--num-workers", "2", "--batch-size", "1"]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _start(listing: Path, out: Path, shared_dir: Path) -> subprocess.Popen:
    process = subprocess.Popen(_command(listing, out, shared_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=ENV, start_new_session=True)  # its own process group
    scores = out / "scores.jsonl"
    _wait_until(lambda: process.poll() is not None or (scores.exists() and scores.stat().st_size > 0), 120,
                "the first record")
    assert process.poll() is None, process.communicate()
    assert len(_group(process.pid)) >= 3  # the run and its two loader processes
    return process


@pytest.mark.slow
def test_second_run_refused_then_kill_leaves_no_process(tmp_path: Path, shared_dir: Path, long_list: Path) -> None:
    out = tmp_path / "results"
    process = _start(long_list, out, shared_dir)
    try:
        # Another run on the same output is refused, naming the first.
        second = subprocess.run(_command(long_list, out, shared_dir), capture_output=True, text=True, env=ENV,
                                timeout=120)
        assert second.returncode != 0 and f"pid {process.pid}" in second.stderr, second.stderr
        assert "another run" in second.stderr and "Traceback" not in second.stderr, second.stderr
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        _wait_until(lambda: not _group(process.pid), 5, "the loader processes to end")
    finally:
        for pid in _group(process.pid):
            os.kill(pid, signal.SIGKILL)
    # The kernel releases the lock with the processes (its last reference can go a moment after).
    def lock_free() -> bool:
        try:
            with resume.RunLock(out / "scores.lock", "test"):
                return True
        except resume.RunLocked:
            return False

    _wait_until(lock_free, 5, "the lock to be released")


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_leaves_no_process(tmp_path: Path, shared_dir: Path, long_list: Path) -> None:
    out = tmp_path / "results"
    process = _start(long_list, out, shared_dir)
    try:
        os.kill(process.pid, signal.SIGTERM)  # as `timeout` does: the run only, not its group
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 143, stderr
        assert "Traceback" not in stderr and "stopped by SIGTERM" in stderr, stderr
        _wait_until(lambda: not _group(process.pid), 5, "the loader processes to end")
    finally:
        for pid in _group(process.pid):
            os.kill(pid, signal.SIGKILL)
    lines = (out / "scores.jsonl").read_text().splitlines()
    assert lines and all(line.endswith("}") for line in lines)  # whole records only


def test_ctrl_c_stops_cleanly_with_status_130(tmp_path: Path, shared_dir: Path, roi_clip, monkeypatch, capsys) -> None:
    roi_clip(tmp_path / "mouths" / "a.mp4", n_frames=20)
    (tmp_path / "list.txt").write_text("a.mp4 1\n", encoding="utf-8")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_engine, "score_items", interrupted)
    status = score_batch.main(["--path", str(shared_dir / FIXTURE), "--list", str(tmp_path / "list.txt"),
                               "--data-root", str(tmp_path / "mouths"), "--results-path", str(tmp_path / "out"),
                               "--cpu", "--no-progress"])
    assert status == 130
    captured = capsys.readouterr()
    assert "stopped by Ctrl-C" in captured.err and "run the same command again" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
