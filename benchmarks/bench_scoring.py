"""Scoring throughput: 10-second clips per second for random-init AV-HuBERT BASE and LARGE.

One "clip" is a mouth-ROI stream (250 frames of 88x88) and its audio features (250 x 104);
scoring it is the lip-only pass, the speech-only pass (each through ``extract_finetune``) and
SpeechForensics' offset search (:func:`sf_fairseq.eval.score.batch_score`), for a batch of clips
per model call, as the scorer runs them (on CPU both streams through the transformer as one
batch). File decoding and feature extraction are not included (they run in loader workers in
``score_batch``). Runs on CPU, and on the GPU when one is available, in fp32 and bf16 autocast
(``auto`` is printed as the precision it resolves to; CPU rows name the CPU capability)::

    python benchmarks/bench_scoring.py                      # CPU (and GPU if present)
    python benchmarks/bench_scoring.py --devices cuda --gpu-batch 128 --sizes large
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from sf_fairseq.eval.encode import PRECISION_CHOICES, StreamEncoder, cpu_capability, resolve_precision
from sf_fairseq.eval.score import batch_score
from sf_fairseq.models.av_hubert import AVHubertConfig, AVHubertModel

SIZES = {
    "base": dict(encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12),
    "large": dict(encoder_layers=24, encoder_embed_dim=1024, encoder_ffn_embed_dim=4096, encoder_attention_heads=16),
}


def build_model(size: str) -> AVHubertModel:
    cfg = AVHubertConfig(label_rate=25, audio_feat_dim=104, layer_norm_first=True, final_dim=256, **SIZES[size])
    return AVHubertModel.build_random(cfg, [504]).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    model: AVHubertModel, device: torch.device, precision: str, batch: int, frames: int, repeats: int, warmup: int
) -> float:
    """Clips per second over ``repeats`` timed batches (after ``warmup`` untimed ones)."""
    # A copy: the bf16/fp16 encoder stores the model's matmul weights in that precision.
    encoder = StreamEncoder(copy.deepcopy(model), device=device, precision=precision)
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(batch, 1, frames, 88, 88, generator=gen).to(device)
    audio = torch.randn(batch, 104, frames, generator=gen).to(device)
    lengths = torch.full((batch,), frames, dtype=torch.long)

    def step() -> None:
        v, a = encoder.encode_padded(video, lengths, audio, lengths)
        scores, _, _ = batch_score(v, lengths, a, lengths)
        scores.cpu()

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    sync(device)
    return batch * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["base", "large"], choices=sorted(SIZES))
    p.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, plus cuda if present)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISION_CHOICES)
    p.add_argument("--seconds", type=float, default=10.0, help="clip length")
    p.add_argument("--cpu-batch", type=int, default=2, help="clips per model call on CPU")
    p.add_argument("--gpu-batch", type=int, default=64, help="clips per model call on GPU")
    p.add_argument("--repeats", type=int, default=None, help="timed batches (default: 1 on CPU, 10 on GPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    frames = int(round(args.seconds * 25))
    if "cuda" in devices:
        torch.backends.cudnn.benchmark = True
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    print(f"CPU threads: {torch.get_num_threads()}, capability {cpu_capability()}; "
          f"clip = {args.seconds:g} s ({frames} frames per stream)")
    print(f"{'size':6} {'device':6} {'precision':9} {'batch':>5} {'clips/s':>9}")
    for size in args.sizes:
        model = build_model(size)
        for name in devices:
            device = torch.device(name)
            model.to(device)
            gpu = device.type == "cuda"
            batch = args.gpu_batch if gpu else args.cpu_batch
            repeats = args.repeats or (10 if gpu else 1)
            for precision in dict.fromkeys(resolve_precision(requested, device) for requested in args.precisions):
                rate = measure(model, device, precision, batch, frames, repeats, warmup=2 if gpu else 0)
                print(f"{size:6} {name:6} {precision:9} {batch:5d} {rate:9.2f}", flush=True)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
