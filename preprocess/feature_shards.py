"""On-disk format of dumped clustering features, one file pair per shard.

The manifest's items are split into ``nshard`` contiguous chunks of ``ceil(N / nshard)`` items
(the reference's sharding, so shard files and job arrays line up with it). Shard ``rank`` is::

    {feat_dir}/{split}_{rank}_{nshard}.npy   float32 [sum(T_i), D]: the frames of every item, in order
    {feat_dir}/{split}_{rank}_{nshard}.len   one line per item: T_i, its number of frames

Rows are appended item by item straight to disk (nothing is held in memory); the ``.npy`` header
is written last, and both files are renamed into place only when the shard is complete, so a
shard that exists is whole and a killed dump leaves only ``*.tmp`` files behind.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import TracebackType
from typing import Iterator

import numpy as np

_NPY_MAGIC = b"\x93NUMPY\x01\x00"
# Fixed header size (magic + length field + dict), a multiple of 64 as the format asks; the
# shape of any shard fits in it, so the header can be rewritten in place when the shard closes.
_NPY_HEADER_BYTES = 128


class FeatureShardError(ValueError):
    """A shard is missing, incomplete, or does not match its lengths file."""


def shard_range(n_items: int, nshard: int, rank: int) -> tuple[int, int]:
    """Item index range ``[start, end)`` of shard ``rank``: contiguous chunks of
    ``ceil(n_items / nshard)`` items (the last ones may be short or empty)."""
    if nshard < 1:
        raise ValueError(f"nshard must be >= 1, got {nshard}")
    if not 0 <= rank < nshard:
        raise ValueError(f"rank must be in [0, {nshard}), got {rank}")
    per_shard = math.ceil(n_items / nshard)
    start = min(rank * per_shard, n_items)
    return start, min(start + per_shard, n_items)


def shard_paths(feat_dir: str | os.PathLike, split: str, rank: int, nshard: int) -> tuple[Path, Path]:
    """Paths of the ``.npy`` array and ``.len`` lengths file of one shard."""
    stem = Path(feat_dir) / f"{split}_{rank}_{nshard}"
    return stem.with_name(stem.name + ".npy"), stem.with_name(stem.name + ".len")


def shard_exists(feat_dir: str | os.PathLike, split: str, rank: int, nshard: int) -> bool:
    return all(p.is_file() for p in shard_paths(feat_dir, split, rank, nshard))


def _npy_header(n_rows: int, dim: int) -> bytes:
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (n_rows, dim)})
    room = _NPY_HEADER_BYTES - len(_NPY_MAGIC) - 2
    if len(header) + 1 > room:
        raise FeatureShardError(f"shard shape ({n_rows}, {dim}) too large for the npy header")
    header = header.ljust(room - 1) + "\n"
    return _NPY_MAGIC + len(header).to_bytes(2, "little") + header.encode("latin1")


class FeatureShardWriter:
    """Appends per-item feature matrices to one shard, written atomically on :meth:`close`.

    Use as a context manager; leaving it by an exception discards the partial shard::

        with FeatureShardWriter(feat_dir, "train", rank, nshard) as shard:
            for feats in items:          # feats: [T, D]
                shard.append(feats)
    """

    def __init__(self, feat_dir: str | os.PathLike, split: str, rank: int, nshard: int) -> None:
        Path(feat_dir).mkdir(parents=True, exist_ok=True)
        self.npy_path, self.len_path = shard_paths(feat_dir, split, rank, nshard)
        self._npy_tmp = self.npy_path.with_name(self.npy_path.name + ".tmp")
        self._len_tmp = self.len_path.with_name(self.len_path.name + ".tmp")
        self._npy = open(self._npy_tmp, "wb")
        self._npy.write(b"\0" * _NPY_HEADER_BYTES)
        self._lengths: list[int] = []
        self._dim: int | None = None

    def append(self, feats: np.ndarray) -> None:
        """Add the frames of the next item. ``feats``: [T, D] (any float dtype; stored float32)."""
        feats = np.asarray(feats)
        if feats.ndim != 2:
            raise FeatureShardError(f"expected features [T, D], got shape {feats.shape}")
        if self._dim is None:
            self._dim = feats.shape[1]
        elif feats.shape[1] != self._dim:
            raise FeatureShardError(f"feature dim {feats.shape[1]} differs from {self._dim}")
        self._npy.write(np.ascontiguousarray(feats, dtype="<f4").tobytes())
        self._lengths.append(feats.shape[0])

    def close(self) -> None:
        """Finish the header and rename both files into place (lengths first, array last)."""
        self._npy.seek(0)
        self._npy.write(_npy_header(sum(self._lengths), self._dim or 0))
        self._npy.flush()
        os.fsync(self._npy.fileno())
        self._npy.close()
        with open(self._len_tmp, "w", encoding="utf-8") as f:
            f.writelines(f"{n}\n" for n in self._lengths)
        os.replace(self._len_tmp, self.len_path)
        os.replace(self._npy_tmp, self.npy_path)

    def abort(self) -> None:
        self._npy.close()
        for tmp in (self._npy_tmp, self._len_tmp):
            tmp.unlink(missing_ok=True)

    def __enter__(self) -> FeatureShardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_shard(
    feat_dir: str | os.PathLike, split: str, rank: int, nshard: int
) -> tuple[np.ndarray, list[int]]:
    """Memory-map one shard. Returns ``(feats [sum(T_i), D] float32, [T_i per item])``."""
    npy_path, len_path = shard_paths(feat_dir, split, rank, nshard)
    if not (npy_path.is_file() and len_path.is_file()):
        raise FeatureShardError(f"missing feature shard {npy_path} / {len_path.name}")
    with open(len_path, encoding="utf-8") as f:
        try:
            lengths = [int(line) for line in f.read().split()]
        except ValueError as err:
            raise FeatureShardError(f"{len_path}: lengths must be integers") from err
    # numpy cannot memory-map a zero-length array (a shard of empty items).
    mmap = "r" if npy_path.stat().st_size > _NPY_HEADER_BYTES else None
    feats = np.load(npy_path, mmap_mode=mmap)
    if feats.ndim != 2 or feats.shape[0] != sum(lengths):
        raise FeatureShardError(
            f"{npy_path}: {feats.shape[0]} rows but {len_path.name} sums to {sum(lengths)}"
        )
    return feats, lengths


def iter_shard_items(feats: np.ndarray, lengths: list[int]) -> Iterator[np.ndarray]:
    """Yield the [T_i, D] block of each item of a shard, in order."""
    offset = 0
    for n in lengths:
        yield feats[offset : offset + n]
        offset += n
