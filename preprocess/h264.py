"""Options of libx264, the encoder of every H.264 file the project writes (mouth crops, the
synthetic corpus, perturbed copies).

The same frames must encode to the same bytes: resumable stages, the shared-stream reuse of
``sf-perturb`` and the tests compare files by hash. x264's AVX-512 code breaks that: with
x264 core 165 as bundled with PyAV 18 (FFmpeg 8), on a CPU with AVX-512 the output depends on
what the process allocated before, as if some AVX-512 routine read memory it never wrote
(measured 2026-12-02 on an AMD EPYC with AVX-512: 50 frames of 96x96, crf 20, ``veryfast``,
one thread, written five times in one process gave up to five different files whose decoded
frames differ by up to 20 grey levels; ``asm=AVX2``, ``mbtree=0`` or ``aq-mode=0`` each made
the five identical). Its AVX2 code is repeatable, so on such CPUs x264 is limited to AVX2.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def libx264_options(crf: int, preset: str, threads: int) -> dict[str, str]:
    """``stream.options`` of a libx264 stream: quality, speed preset, encoder threads (0 =
    FFmpeg's choice), and the instruction set limit of this module's docstring."""
    options = {"crf": str(crf), "preset": preset, "threads": str(threads)}
    if cpu_has_avx512():
        options["x264-params"] = "asm=AVX2"
    return options


@functools.lru_cache(maxsize=1)
def cpu_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (and AVX2, which every AVX-512 CPU has; checked so that
    limiting x264 to AVX2 can never select instructions the CPU lacks)."""
    flags = _cpu_features()
    return "AVX512F" in flags and "AVX2" in flags


def _cpu_features() -> set[str]:
    """Upper-case names of the CPU's SIMD features: NumPy's runtime detection (the table
    ``numpy.show_runtime()`` prints), else the flags of Linux's /proc/cpuinfo."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        __cpu_features__ = None
    if __cpu_features__:
        return {name for name, present in __cpu_features__.items() if present}
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        logger.debug("CPU features unknown: x264 chooses its own instruction set")
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return {flag.upper() for flag in line.split(":", 1)[1].split()}
    return set()
