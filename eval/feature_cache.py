"""Features of recently encoded streams, keyed by their content.

Batch jobs often hold clips that share a stream: a benchmark's fake that keeps the real clip's
video and replaces its speech (FakeAVCeleb's RealVideo-FakeAudio, a dubbed clip, an audio
offset), or a fake whose lips were redrawn over the real speech. The lip front end is the costly
part of encoding, so :class:`~.encode.StreamEncoder` encodes each distinct stream of a batch once
and keeps its features here for the batches that follow (batches are formed in length order,
so clips that share a stream, having the same length, come close together).

A stream's features do not depend on the clips batched with it (padding is masked and both
front ends work frame by frame), so a reused feature is the one a fresh encoding would give,
up to float rounding of a different batch shape.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # not imported at run time: eval.speech keeps numpy arrays without torch
    import torch

    Features = torch.Tensor | np.ndarray

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def content_key(stream: str, array: np.ndarray) -> bytes:
    """A key for ``array``'s exact values as the ``stream`` (``video`` or ``audio``) input."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{stream}|{array.dtype.str}|{array.shape}|".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.digest()


class FeatureCache:
    """A least-recently-used map of content keys to features (tensors or arrays, e.g. ``[T, D]``),
    bounded in bytes.

    Args:
        max_bytes: total size of the kept features; 0 disables keeping (the encoder then still
            encodes each distinct stream of a batch once).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, Features] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: bytes) -> Features | None:
        features = self._entries.get(key)
        if features is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return features

    def put(self, key: bytes, features: Features) -> None:
        """Keep ``features`` (not a copy) as the newest entry; the oldest go while the total is
        over ``max_bytes``. An entry larger than ``max_bytes`` is not kept."""
        if features.nbytes > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._entries[key] = features
        self._bytes += features.nbytes
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
