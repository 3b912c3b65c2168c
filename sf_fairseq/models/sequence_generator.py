"""fairseq's beam search (``SequenceGenerator``) on AV-HuBERT inputs.

fairseq reads the batch size, the source length (for ``max_len_a``) and the device from a tensor
in ``net_input`` (``src_tokens``); AV-HuBERT's ``net_input["source"]`` is a dict of streams. This
generator adds a stand-in ``src_tokens`` [B, T] and ``src_lengths`` [B] (valid frames) built from
the streams and the padding mask, then runs fairseq's search unchanged. The encoder ignores them.
"""

from __future__ import annotations

from typing import Any

import torch
from fairseq.sequence_generator import SequenceGenerator


def source_frames(net_input: dict[str, Any]) -> tuple[int, int, torch.device]:
    """(batch size, frames, device) of ``net_input["source"]``: video [B, 1, T, H, W] or
    audio [B, F, T]."""
    source = net_input["source"]
    stream = source.get("video") if source.get("video") is not None else source.get("audio")
    if stream is None:
        raise ValueError("net_input['source'] has neither a video nor an audio stream")
    return stream.size(0), stream.size(2), stream.device


class AVHubertSequenceGenerator(SequenceGenerator):
    """``SequenceGenerator`` whose samples carry ``net_input = {"source": {"audio", "video"},
    "padding_mask"}``; every option (beam, lenpen, max_len_a/b, ...) is fairseq's."""

    def _generate(self, sample: dict[str, Any], *args: Any, **kwargs: Any) -> list[list[dict[str, torch.Tensor]]]:
        net_input = sample["net_input"]
        batch, frames, device = source_frames(net_input)
        padding_mask = net_input.get("padding_mask")
        if padding_mask is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=device)
        else:
            lengths = (~padding_mask).long().sum(-1)
        stand_in = torch.zeros(batch, frames, dtype=torch.long, device=device)
        sample = {**sample, "net_input": {**net_input, "src_tokens": stand_in, "src_lengths": lengths}}
        return super()._generate(sample, *args, **kwargs)
