"""The shared resume rules: fingerprints refuse other settings, atomic files, locks, temporaries."""

import os
import subprocess
import sys
import time

import pytest

from sf_fairseq.resume import (
    FOREIGN_TEMPORARY_AGE_S, RunLock, RunLocked, SettingsMismatch, atomic_path, check_fingerprint, differing_keys,
    file_sha256, remove_stale_temporaries, temporary_path, write_fingerprint,
)


def test_fingerprint_reuse_refuse_overwrite(tmp_path):
    record = tmp_path / "run.json"
    settings = {"checkpoint_sha256": "ab", "layer": 12, "caps": {"max_offset": 15}}
    assert check_fingerprint(record, settings, "scores") is False  # nothing yet
    write_fingerprint(record, settings)
    assert check_fingerprint(record, dict(settings), "scores") is True
    other = {**settings, "layer": 6, "caps": {"max_offset": 10}}
    with pytest.raises(SettingsMismatch) as err:
        check_fingerprint(record, other, "scores")
    assert err.value.differing == ["caps.max_offset", "layer"]
    assert "caps.max_offset, layer" in str(err.value) and "--overwrite" in str(err.value)
    assert check_fingerprint(record, other, "scores", overwrite=True) is False


def test_differing_keys_counts_added_and_removed():
    assert differing_keys({"a": 1, "b": 2}, {"a": 1, "c": 3}) == ["b", "c"]


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".json"
        tmp.write_text("{}")
    assert target.read_text() == "{}"


def test_stale_temporaries_of_dead_processes_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / "sub" / f".a.wav.{dead.stdout.strip()}.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"x" * 10)
    live = temporary_path(tmp_path / "b.mp4")
    live.write_bytes(b"y")
    unrelated = tmp_path / ".hidden.tmp"
    unrelated.write_bytes(b"z")
    old_style = tmp_path / f".c.wav.{dead.stdout.strip()}.tmp"  # written before host tags
    old_style.write_bytes(b"x")
    foreign = tmp_path / f".d.wav.otherhost-{dead.stdout.strip()}.tmp"  # a shard on another machine
    foreign.write_bytes(b"x")
    foreign_old = tmp_path / f".e.wav.otherhost-{dead.stdout.strip()}.tmp.wav"
    foreign_old.write_bytes(b"x")
    long_ago = time.time() - FOREIGN_TEMPORARY_AGE_S - 60
    os.utime(foreign_old, (long_ago, long_ago))
    assert remove_stale_temporaries(tmp_path) == 3
    assert not stale.exists() and not old_style.exists() and not foreign_old.exists()
    assert live.exists() and unrelated.exists() and foreign.exists()


def test_lock_refuses_second_holder_names_it(tmp_path):
    lock_file = tmp_path / "scores.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from sf_fairseq.resume import RunLock\n"
         f"l = RunLock({str(lock_file)!r}, 'x'); l.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked) as err:
            RunLock(lock_file, "scoring into out").acquire()
        assert f"pid {holder.pid}" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    with RunLock(lock_file, "scoring into out"):  # the killed holder left no stale lock
        pass


def test_file_sha256_follows_content(tmp_path):
    f = tmp_path / "ckpt.pt"
    f.write_bytes(b"a")
    first = file_sha256(f)
    f.write_bytes(b"bb")
    assert file_sha256(f) != first


def test_manifest_refusing_a_field_leaves_no_temporary(tmp_path):
    from sf_fairseq.data.manifest import ManifestError, ManifestItem, write_manifest

    items = [ManifestItem("a\tb", "a.mp4", "a.wav", 10, 6400)]
    with pytest.raises(ManifestError):
        write_manifest(tmp_path / "train.tsv", str(tmp_path), items)
    assert list(tmp_path.iterdir()) == []


def test_exclusive_output_cleans_only_once_it_holds_the_lock(tmp_path):
    from sf_fairseq.resume import exclusive_output

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".scores.jsonl.{dead}.tmp"
    stale.write_bytes(b"x")
    holder = RunLock(tmp_path / "scores.lock", "first run")
    holder.acquire()
    try:
        with pytest.raises(RunLocked):
            with exclusive_output(tmp_path / "scores.lock", "second run", tmp_path):
                pass
        assert stale.exists()  # a refused run touches nothing
    finally:
        holder.release()
    with exclusive_output(tmp_path / "scores.lock", "second run", tmp_path):
        assert not stale.exists()
    with exclusive_output(tmp_path / "scores.lock", "third run", tmp_path):  # released after the block
        pass
