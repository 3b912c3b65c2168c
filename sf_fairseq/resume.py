"""Resumable steps: settings fingerprints, atomic files, run locks, leaked temporary files.

Every stage that leaves outputs on disk for a later rerun (scoring, preprocessing, k-means
iterations, the robustness grid, the demo) follows one rule, implemented here:

* the settings that change an output are recorded beside it as a **fingerprint** (a JSON
  object: checkpoint content hash, layer, offsets, caps, precision, input identity, ...);
* a rerun with the same fingerprint reuses finished work; with another fingerprint it is
  refused with :class:`SettingsMismatch`, which names every differing setting, unless the user
  asked to overwrite (then the old outputs are discarded first, never mixed);
* files appear complete or not at all (:func:`atomic_write_text`, :func:`atomic_path`): written
  to ``.<name>.<host>-<pid>.tmp`` beside the target, then renamed; temporaries left by killed runs are
  removed by :func:`remove_stale_temporaries` on the next run;
* one process at a time works on an output (:class:`RunLock`); a second one is refused with a
  message naming the holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

logger = logging.getLogger(__name__)

# ``.<name>.<host>-<pid>.tmp<suffix>``; names without ``<host>-`` (older runs) count as local.
_TEMP_NAME = re.compile(r"^\..+\.(?:(?P<host>[A-Za-z0-9_]+)-)?(?P<pid>\d+)\.tmp(\.[A-Za-z0-9]+)?$")
# A temporary of another host (shards on several machines sharing a folder) cannot be checked
# for a live writer: it is removed only when nothing has written to it for this long.
FOREIGN_TEMPORARY_AGE_S = 24 * 3600.0


class SettingsMismatch(RuntimeError):
    """Finished outputs were made with other settings than this run's."""

    def __init__(self, what: str, record: Path, differing: list[str], hint: str):
        self.differing = differing
        super().__init__(
            f"{what} in {record.parent} was made with other settings (differing: {', '.join(differing)}); "
            f"{hint}"
        )


class RunLocked(RuntimeError):
    """Another live process holds the lock on an output."""


# -- hashing ---------------------------------------------------------------------------------

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (memoised per path, size and modification time, so a large
    checkpoint is read once per process)."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (real, stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Cheap identity of an input file (absolute path, size, modification time): what a
    fingerprint records of inputs too many or too large to hash."""
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two fingerprints (nested dicts
    compared key by key)."""
    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differing_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


# -- fingerprints ----------------------------------------------------------------------------


def normalise(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(fingerprint, sort_keys=True))


def check_fingerprint(
    record: str | os.PathLike,
    fingerprint: Mapping[str, Any],
    what: str,
    overwrite: bool = False,
    hint: str = "pass --overwrite to discard them, or write to another directory",
) -> bool:
    """Compare this run's ``fingerprint`` with the one recorded in ``record``.

    Returns True when finished work may be reused (same settings), False when there is none
    (no record) or the caller must discard it (other settings and ``overwrite``). Raises
    :class:`SettingsMismatch` for other settings without ``overwrite``."""
    record = Path(record)
    if not record.is_file():
        return False
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        if overwrite:
            return False
        raise SettingsMismatch(what, record, [f"<unreadable {record.name}: {err}>"], hint) from err
    new = normalise(fingerprint)
    if old == new:
        return True
    if overwrite:
        logger.warning("%s: settings changed (%s); discarding the old outputs", record,
                       ", ".join(differing_keys(old, new)))
        return False
    raise SettingsMismatch(what, record, differing_keys(old, new), hint)


def write_fingerprint(record: str | os.PathLike, fingerprint: Mapping[str, Any]) -> None:
    atomic_write_text(record, json.dumps(normalise(fingerprint), indent=2, sort_keys=True) + "\n")


# -- atomic files ----------------------------------------------------------------------------


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def temporary_path(path: str | os.PathLike) -> Path:
    """``.<name>.<host>-<pid>.tmp<suffix>`` beside ``path`` (the suffix kept so that writers
    that pick a format by extension still can; the host lets a cleanup on another machine
    sharing the folder leave it alone)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_host_tag()}-{os.getpid()}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``, on any error it
    is removed. ``path`` therefore only ever holds a complete file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(tmp: Path, match: re.Match) -> bool:
    if match["host"] in (None, _host_tag()):
        return not _pid_alive(int(match["pid"]))
    return time.time() - tmp.stat().st_mtime > FOREIGN_TEMPORARY_AGE_S


def remove_stale_temporaries(directory: str | os.PathLike, recursive: bool = True) -> int:
    """Remove the temporary files (:func:`temporary_path`) left in ``directory`` by killed
    runs: this host's whose process no longer runs, and other hosts' untouched for
    :data:`FOREIGN_TEMPORARY_AGE_S`. Returns how many were removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    removed = 0
    for tmp in directory.rglob(".*.tmp*") if recursive else directory.glob(".*.tmp*"):
        match = _TEMP_NAME.match(tmp.name)
        if match is None or not tmp.is_file() or not _is_stale(tmp, match):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed += 1
    if removed:
        logger.info("%s: removed %d temporary file(s) left by killed runs", directory, removed)
    return removed


# -- locks -----------------------------------------------------------------------------------


class RunLock:
    """An exclusive lock on an output (``flock`` on ``<path>``, which records the holder's pid
    and command). Released when the process exits, however it exits, so a killed run never
    leaves a stale lock behind.

    >>> with RunLock(out / "scores.jsonl.lock", "scoring into out/"):
    ...     ...
    """

    def __init__(self, path: str | os.PathLike, what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise RunLocked(
                    f"{self.what}: another run is working on it ({holder}); wait for it to finish, or "
                    f"use another output directory (lock file {self.path})"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(_command_line())}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _command_line() -> list[str]:
    try:
        return Path("/proc/self/cmdline").read_bytes().decode("utf-8", "replace").split("\0")[:-1][:6]
    except OSError:
        return [f"pid {os.getpid()}"]


@contextlib.contextmanager
def exclusive_output(lock: str | os.PathLike, what: str, directory: str | os.PathLike) -> Iterator[None]:
    """Work in ``directory`` as its only writer: hold :class:`RunLock` ``lock`` (raises
    :class:`RunLocked` naming the holder when another process has it) and, once it is held,
    remove the temporaries killed runs left there."""
    with RunLock(lock, what):
        remove_stale_temporaries(directory)
        yield

