"""Clustering features of later iterations: layer ``L`` of an AV-HuBERT encoder, at 25 Hz.

Mirrors the reference's ``dump_hubert_feature.py``: each item's inputs are built by the clip-input
contract (:mod:`sf_fairseq.data.clip_inputs`), as the evaluation dataset builds them — grayscale
mouth ROI frames center-cropped and normalised with the checkpoint's task settings; audio logfbank
stacked ``stack_order_audio`` times, zero-padded or trimmed at the end to the video's frame count,
per-frame normalised if the task normalizes — and both streams go through
``model.extract_features(mask=False)``. Layer ``L >= 1`` is the raw residual stream after
transformer block ``L`` (no final LayerNorm); layer 0 is the fused, projected front-end output
(``ret_conv``). One feature row per video frame.

Unlike the reference (one clip at a time), clips are batched: up to ``max_batch_frames`` padded
frames per forward pass, with a padding mask, which gives the same features for every real frame.
Clips of similar length share a batch (:mod:`sf_fairseq.data.batching`, within windows of a few
batches' worth of frames), so a long clip does not pad the short ones; features come out in input
order.
"""

from __future__ import annotations

import collections
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from sf_fairseq.checkpoint import load_encoder
from sf_fairseq.data.batching import BatchLimits, length_batches
from sf_fairseq.data.clip_inputs import FPS, InputSettings, clip_inputs, pad_batch, padding_mask, read_clip
from sf_fairseq.data.clip_inputs import align_audio_to_video  # noqa: F401  (importable here as before)
from sf_fairseq.data.manifest import Manifest, ManifestItem

logger = logging.getLogger(__name__)

MODEL_FEATURE_RATE = FPS
# Clips are sorted by length within windows of this many batches' worth of frames: enough for
# batches of similar lengths, while the window's inputs and features stay small in memory.
SORT_WINDOW_BATCHES = 4

T = TypeVar("T")
R = TypeVar("R")


def _ordered_prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` in order, with up to ``2 * workers`` results loaded ahead."""
    if workers <= 0:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: collections.deque[Future[R]] = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class ModelFeatureReader:
    """Features of manifest items from one layer of a checkpoint's AV-HuBERT encoder.

    Args:
        checkpoint: a pretrained or fine-tuned AV-HuBERT file (ours or a published one).
        layer: 0 for the front-end output, ``1..n_layers`` for the output of that block.
        device: torch device for the forward passes (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        max_batch_frames: padded video frames per forward pass (batch size × longest clip).
        workers: threads decoding video and computing audio features ahead of the model.
        trust_checkpoint: allow arbitrary pickled objects in the checkpoint (see
            :func:`sf_fairseq.checkpoint.load_checkpoint`).
    """

    feature_rate = MODEL_FEATURE_RATE

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        layer: int,
        device: str | torch.device = "cpu",
        max_batch_frames: int = 1000,
        workers: int = 2,
        trust_checkpoint: bool = False,
    ) -> None:
        model, task_cfg = load_encoder(str(checkpoint), trust_checkpoint=trust_checkpoint)
        n_layers = len(model.encoder.layers)
        if not 0 <= layer <= n_layers:
            raise ValueError(f"{checkpoint}: layer must be in [0, {n_layers}], got {layer}")
        self.layer = layer
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.max_batch_frames = max_batch_frames
        self.workers = workers
        self.settings = InputSettings.from_task_config(task_cfg)

    def load_inputs(self, manifest: Manifest, item: ManifestItem) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs of one item: ``(video float32 [T, crop, crop], audio float32 [T, F])``
        with ``T`` its number of video frames and ``F = 26 * stack_order_audio``."""
        # Errors name the file (missing, undecodable, not 16 kHz mono).
        frames, samples = read_clip(manifest.resolve(item.video), manifest.resolve(item.audio))
        return clip_inputs(frames, samples, self.settings, align=True)

    @torch.no_grad()
    def features(self, batch: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Run the encoder on a batch of ``load_inputs`` outputs.

        Returns:
            one float32 ``[T_i, D]`` array per clip, padding removed.
        """
        lengths = [len(video) for video, _ in batch]
        video, lengths_t = pad_batch([v for v, _ in batch])  # [B, T, crop, crop]
        audio, _ = pad_batch([a for _, a in batch])  # [B, T, F]
        mask = padding_mask(lengths_t, int(lengths_t.max()))
        source = {"video": video.unsqueeze(1), "audio": audio.transpose(1, 2)}  # [B, 1, T, H, W], [B, F, T]
        feats, _ = self.model.extract_features(
            source={name: x.to(self.device) for name, x in source.items()},
            # None for an unpadded batch, as the reference passes for its single clips.
            padding_mask=mask.to(self.device) if mask.any() else None,
            mask=False,
            ret_conv=self.layer == 0,
            # With ret_conv the encoder output is discarded: stop it after one block.
            output_layer=max(self.layer, 1),
        )  # [B, T, D]
        feats = feats.float().cpu().numpy()
        return [feats[i, :length] for i, length in enumerate(lengths)]

    def iter_features(self, manifest: Manifest, items: Sequence[ManifestItem]) -> Iterator[np.ndarray]:
        """Features of ``items`` in order, float32 ``[n_video_frames_i, D]`` each."""
        inputs = _ordered_prefetch(lambda item: self.load_inputs(manifest, item), items, self.workers)
        window: list[tuple[np.ndarray, np.ndarray]] = []
        frames = 0
        for pair in inputs:
            window.append(pair)
            frames += len(pair[0])
            if frames >= SORT_WINDOW_BATCHES * self.max_batch_frames:
                yield from self._window_features(window)
                window, frames = [], 0
        if window:
            yield from self._window_features(window)

    def _window_features(self, window: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Features of ``window``'s clips in its order, computed in length-sorted batches."""
        out: dict[int, np.ndarray] = {}
        # Only the frame budget limits a batch here (no clip count, no padding cap).
        limits = BatchLimits(batch_size=len(window), max_frames=self.max_batch_frames, max_padding=None)
        for batch in length_batches([len(video) for video, _ in window], limits):
            out.update(zip(batch, self.features([window[i] for i in batch])))
        return [out[i] for i in range(len(window))]
