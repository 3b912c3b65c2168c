"""Benchmark the AV-HuBERT model (random initialisation, BASE and LARGE) for scoring and training.

For each size it prints, next to the targets of issues 3 and 18:

* CPU seconds of the two scoring passes SpeechForensics runs on a 10-second clip (250 frames),
  lip-only and speech-only: as the reference runs them (two ``extract_finetune`` calls) and as
  the scorer runs them on CPU (``extract_finetune_streams``: both through the transformer as one
  batch); in float32 and, where the CPU runs bf16 natively (AVX512_BF16 or AMX) or when asked
  with ``--precisions fp32 bf16``, in bfloat16 (CPU autocast, with float32 weights and with the
  scorer's weights stored in bfloat16). Each figure is the minimum wall clock of ``--repeats``
  runs after a warm-up, with this process's CPU time (less disturbed by other jobs on a shared
  machine), the CPU capability (``AVX2``, ``AVX512 + AVX512_BF16 + AMX``, ...) and the 1-minute
  load average when it was taken;
* the score difference between float32 and bfloat16: the score is the mean over frames of the
  cosine similarity of the two streams' final-layer features, as SpeechForensics scores at zero
  offset;
* training frames per second on CPU: one forward + backward step (masked prediction loss) on a
  2 x 250-frame batch, float32;
* peak resident memory of scoring a 50-second clip (1250 frames) with LARGE, measured in a fresh
  process so that nothing else counts;
* with CUDA: bfloat16 (autocast) training frames per second at 16 x 250 frames per batch and the
  peak GPU memory of that step.

On a shared machine pin the process to one core and repeat::

    python benchmarks/bench_model.py                 # everything, BASE and LARGE
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/bench_model.py --sizes large --skip-rss \\
        --skip-training --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import multiprocessing
import os
import resource
import time
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from sf_fairseq.eval.encode import cpu_capability, resolve_precision, store_matmul_weights_in
from sf_fairseq.models.av_hubert import AVHubertConfig, AVHubertModel

SIZES = {
    "base": dict(encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12),
    "large": dict(encoder_layers=24, encoder_embed_dim=1024, encoder_ffn_embed_dim=4096, encoder_attention_heads=16),
}
# Scoring passes of a 10-second clip on CPU. float32: issue 3 (BASE) and issue 18 (LARGE, on an
# AVX2 host); bfloat16: issue 18, LARGE on a CPU with native bf16 (AVX512_BF16 or AMX).
FP32_TARGET_S = {"base": 1.8, "large": 3.5}
BF16_TARGET_S = {"large": 1.0}
SCORE_TOLERANCE = 0.005
RSS_TARGET_GIB = 4.0
GPU_FRAMES_TARGET = {"base": 45_000}
GPU_MEMORY_REFERENCE_GIB = {"base": 28.6, "large": 34.4}
N_CLUSTERS = 2000
FPS = 25


def build_model(size: str) -> AVHubertModel:
    """A randomly initialised model with the settings of the published iteration-5 configs."""
    cfg = AVHubertConfig(
        label_rate=25, final_dim=256, untie_final_proj=True, layer_norm_first=True, audio_feat_dim=104,
        feature_grad_mult=0.1, encoder_layerdrop=0.05, dropout_input=0.1, dropout_features=0.1,
        masking_type="input", mask_prob_image=0.3, mask_length_image=5, mask_prob_audio=0.8,
        mask_length_audio=10, modality_dropout=0.5, audio_dropout=0.5, selection_type="same_seq",
        **SIZES[size],
    )
    return AVHubertModel.build_random(cfg, num_classes=[N_CLUSTERS + 4])


def clip_inputs(frames: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised video [B, 1, T, 88, 88] and per-frame normalised audio features [B, 104, T]."""
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, 1, frames, 88, 88, generator=generator)
    audio = F.layer_norm(torch.randn(batch, frames, 104, generator=generator), (104,)).transpose(1, 2)
    return video, audio


@contextlib.contextmanager
def precision(dtype: torch.dtype, device: str = "cpu") -> Iterator[None]:
    if dtype == torch.float32:
        yield
    else:
        with torch.autocast(device, dtype=dtype):
            yield


def score_passes(model: AVHubertModel, video: torch.Tensor, audio: torch.Tensor,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The two SpeechForensics encodings: video-only and audio-only final-layer features."""
    with torch.inference_mode(), precision(dtype):
        video_features, _ = model.extract_finetune({"video": video, "audio": None})
        audio_features, _ = model.extract_finetune({"video": None, "audio": audio})
    return video_features.float(), audio_features.float()


def scorer_passes(model: AVHubertModel, video: torch.Tensor, audio: torch.Tensor,
                  dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The same encodings as the scorer computes them on CPU: both streams through the
    transformer as one batch (``extract_finetune_streams``)."""
    mask = torch.zeros(video.size(0), video.size(2), dtype=torch.bool)
    with torch.inference_mode(), precision(dtype):
        video_features, audio_features = model.extract_finetune_streams(video, mask, audio, mask)
    return video_features.float(), audio_features.float()


def frame_cosines(video_features: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the two streams per frame [B, T]; the score is its mean (zero offset)."""
    return F.cosine_similarity(video_features, audio_features, dim=-1)


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(minimum wall seconds, minimum process CPU seconds) of ``repeats`` calls after a warm-up:
    on a shared machine other jobs only ever add time."""
    function()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def conditions() -> str:
    """Where a CPU figure was taken: capability and the 1-minute load average."""
    return f"{cpu_capability()}, load {os.getloadavg()[0]:.1f}"


def training_step(model: AVHubertModel, video: torch.Tensor, audio: torch.Tensor, dtype: torch.dtype,
                  device: str) -> None:
    """Masked prediction forward + backward on one batch (the av_hubert criterion's loss)."""
    batch, frames = audio.size(0), audio.size(2)
    targets = [torch.randint(4, N_CLUSTERS + 4, (batch, frames), device=device)]
    with precision(dtype, device):
        out = model({"video": video, "audio": audio}, target_list=targets, mask=True)
        loss = sum(F.cross_entropy(logits.float(), target, reduction="sum")
                   for logits, target in zip(out["logit_m_list"], out["target_m_list"]))
        loss = loss + 10.0 * out["features_pen"] * out["target_m_list"][0].numel()
    loss.backward()
    model.zero_grad(set_to_none=True)


def bench_cpu(size: str, repeats: int, train_batch: int, precisions: list[str], training: bool) -> None:
    model = build_model(size).eval()
    video, audio = clip_inputs(250)
    print(f"\n{size.upper()} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters), "
          f"scoring a 10-second clip (250 frames), video-only + audio-only passes, "
          f"{torch.get_num_threads()} threads, CPU {cpu_capability()}, precision auto = "
          f"{resolve_precision('auto', 'cpu')}")
    scores = {}
    variants = [(model, score_passes, torch.float32, "float32 (reference: 2 passes)"),
                (model, scorer_passes, torch.float32, "float32 (scorer: 1 joint pass)")]
    if "bf16" in precisions:
        # The scorer's bf16 path (eval.encode.StreamEncoder) stores the matmul weights in bf16 once;
        # plain autocast, as the reference model simply cast to bf16 would run, is shown beside it.
        stored = store_matmul_weights_in(copy.deepcopy(model), torch.bfloat16)
        variants += [(model, score_passes, torch.bfloat16, "bfloat16 (reference: autocast)"),
                     (stored, scorer_passes, torch.bfloat16, "bfloat16 (scorer: bf16 weights)")]
    else:
        print("  bfloat16 skipped: this CPU emulates it (add --precisions fp32 bf16 to measure it)")
    for variant, passes, dtype, name in variants:
        wall, cpu = timed(lambda: passes(variant, video, audio, dtype), repeats)
        where = conditions()
        scores[name] = frame_cosines(*passes(variant, video, audio, dtype))
        target = None
        if passes is scorer_passes:
            target = FP32_TARGET_S.get(size) if dtype == torch.float32 else BF16_TARGET_S.get(size)
        target_text = f"target <= {target:.2f} s" if target else "no target"
        verdict = "" if target is None else ("  ok" if wall <= target else "  MISSED")
        print(f"  {name:32s} {wall:6.2f} s wall (process CPU {cpu:6.2f} s), min of {repeats}  "
              f"[{where}]  [{target_text}]{verdict}")
    reference = scores["float32 (reference: 2 passes)"]
    for name in list(scores)[1:]:
        difference = abs(reference.mean() - scores[name].mean()).item()
        verdict = "ok" if difference <= SCORE_TOLERANCE else "MISSED"
        print(f"  score float32 {reference.mean():+.5f}, {name} {scores[name].mean():+.5f}: "
              f"|difference| {difference:.5f}  [target <= {SCORE_TOLERANCE}]  {verdict}; "
              f"largest per-frame cosine difference {(reference - scores[name]).abs().max():.4f}")
    if not training:
        return
    model.train()
    video, audio = clip_inputs(250, batch=train_batch, seed=1)
    wall, _ = timed(lambda: training_step(model, video, audio, torch.float32, "cpu"), max(1, repeats // 2))
    print(f"  training (float32, {train_batch} x 250 frames, forward + backward): "
          f"{train_batch * 250 / wall:6.1f} frames/s ({wall:.2f} s per step)  [{conditions()}]")


def peak_rss_bytes() -> int:
    """This process's peak resident memory. ``VmHWM`` belongs to the address space, so unlike
    ``ru_maxrss`` (kept across exec) it does not include the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _peak_rss_child(size: str, frames: int, dtype_name: str, queue: Any) -> None:
    """Runs in a fresh process: peak RSS (bytes) of building the model and scoring one clip."""
    model = build_model(size).eval()
    video, audio = clip_inputs(frames)
    before = peak_rss_bytes()
    score_passes(model, video, audio, getattr(torch, dtype_name))
    queue.put((before, peak_rss_bytes()))


def bench_rss(size: str = "large", seconds: int = 50) -> None:
    context = multiprocessing.get_context("spawn")
    for dtype_name in ("float32", "bfloat16"):
        queue = context.Queue()
        process = context.Process(target=_peak_rss_child, args=(size, seconds * FPS, dtype_name, queue))
        process.start()
        before, peak = queue.get()
        process.join()
        verdict = "ok" if peak / 2**30 <= RSS_TARGET_GIB else "MISSED"
        print(f"  peak RSS scoring a {seconds}-second clip with {size.upper()} ({dtype_name}): "
              f"{peak / 2**30:.2f} GiB (model, inputs and imports: {before / 2**30:.2f} GiB)  "
              f"[target < {RSS_TARGET_GIB:.0f} GiB]  {verdict}")


def bench_gpu(size: str, batch: int, steps: int, cudnn_benchmark: bool, profile: bool) -> None:
    device = "cuda"
    torch.backends.cudnn.benchmark = cudnn_benchmark
    model = build_model(size).to(device).train()
    video, audio = (t.to(device) for t in clip_inputs(250, batch=batch, seed=2))
    for _ in range(2):  # warm-up (kernels, cuDNN algorithm search, allocator)
        training_step(model, video, audio, torch.bfloat16, device)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        training_step(model, video, audio, torch.bfloat16, device)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    frames_per_s = batch * 250 / seconds
    peak = torch.cuda.max_memory_allocated() / 2**30
    target = GPU_FRAMES_TARGET.get(size)
    target_text = f"target >= {target:,} frames/s on an H100" if target else "no target"
    verdict = "" if target is None else ("  ok" if frames_per_s >= target else "  MISSED")
    print(f"\n{size.upper()} on {torch.cuda.get_device_name()}: bfloat16 training, {batch} x 250 frames, "
          f"cudnn.benchmark={cudnn_benchmark}: {frames_per_s:,.0f} frames/s ({seconds * 1000:.0f} ms per step)  "
          f"[{target_text}]{verdict}")
    reference = GPU_MEMORY_REFERENCE_GIB[size]
    verdict = "ok" if peak <= reference else "MISSED"
    print(f"  peak GPU memory {peak:.1f} GiB  [reference {reference} GiB]  {verdict}")
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profiler:
            training_step(model, video, audio, torch.bfloat16, device)
            torch.cuda.synchronize()
        print(profiler.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))
    del model
    torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["base", "large"],
                        help="model sizes to benchmark (default: base large)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (minimum; default 3)")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=None,
                        help="CPU scoring precisions (default: fp32, plus bf16 where the CPU runs it natively)")
    parser.add_argument("--train-batch", type=int, default=2, help="clips of 250 frames per CPU training step")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--skip-cpu", action="store_true", help="skip the CPU scoring and training figures")
    parser.add_argument("--skip-training", action="store_true", help="skip the CPU training figure")
    parser.add_argument("--skip-rss", action="store_true", help="skip the 50-second peak-RSS measurement")
    parser.add_argument("--gpu-batch", type=int, default=16, help="clips of 250 frames per GPU training step")
    parser.add_argument("--gpu-steps", type=int, default=10, help="timed GPU training steps")
    parser.add_argument("--no-cudnn-benchmark", action="store_true",
                        help="leave torch.backends.cudnn.benchmark off (fairseq's default) for the GPU figures")
    parser.add_argument("--gpu-profile", action="store_true", help="print the GPU kernels of one training step")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    precisions = args.precisions or ["fp32", resolve_precision("auto", "cpu")]
    if not args.skip_cpu:
        for size in args.sizes:
            bench_cpu(size, args.repeats, args.train_batch, precisions, not args.skip_training)
    if not args.skip_rss:
        print()
        bench_rss()
    if torch.cuda.is_available():
        for size in args.sizes:
            bench_gpu(size, args.gpu_batch, args.gpu_steps, not args.no_cudnn_benchmark, args.gpu_profile)
    else:
        print("\nno CUDA device: GPU figures skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
