"""Start-up cost of the numpy-only stages: ``sf-report`` must not pay for torch or fairseq.

Runs, each in a fresh interpreter (what a user's shell does), and prints the minimum wall time
over ``--repeats`` runs and whether torch/fairseq ended up imported:

* ``import sf_fairseq``;
* ``sf-report --help``;
* ``sf-report`` on ``--records`` synthetic score records (one JSONL file, labelled real and
  fake, 4 categories; bootstrap intervals off by default so that the figure is the command's own
  cost, ``--n-boot`` to add them).

The preprocessing worker's peak RSS is measured by ``benchmarks/bench_preprocess.py`` (it runs
the worker's code in its own process and prints ``peak RSS``).

    python benchmarks/bench_light_stages.py --records 10000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# torch in this process only, for the host line: each figure runs in a fresh interpreter.
from sf_fairseq.eval.encode import cpu_capability, cpu_model_name

# Prints what a stage imported after running it: the stage's ``main`` is called in-process.
PROBE = """
import sys
{body}
print("IMPORTED", "torch" in sys.modules, "fairseq" in sys.modules, "sklearn" in sys.modules)
"""


def write_records(path: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    categories = ["real", "dubbed", "lipsync", "offset"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            category = categories[i % len(categories)]
            label = 1 if category == "real" else 0
            score = float(rng.normal(0.6 if label else 0.45, 0.08))
            record = {"id": f"clip{i:06d}", "video": f"video/clip{i:06d}.mp4", "audio": f"audio/clip{i:06d}.wav",
                      "label": label, "category": category, "status": "ok", "score": score,
                      "best_offset": int(rng.integers(-3, 4)), "n_frames": 250}
            f.write(json.dumps(record) + "\n")


def timed(body: str, repeats: int) -> tuple[float, str]:
    """Minimum wall time of ``python -c PROBE(body)`` and its import line."""
    best, imported = float("inf"), ""
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        best = min(best, elapsed)
        imported = next(line for line in result.stdout.splitlines() if line.startswith("IMPORTED"))
    return best, imported


def describe(imported: str) -> str:
    _, torch, fairseq, sklearn = imported.split()
    return f"torch imported: {torch}, fairseq: {fairseq}, sklearn: {sklearn}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000,
                        help="score records for the report run (default: %(default)s)")
    parser.add_argument("--n-boot", type=int, default=0,
                        help="bootstrap replicates of the report run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="runs per figure; the minimum is printed (default: %(default)s)")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"{now:%Y-%m-%d %H:%M} UTC, {cpu_model_name()} ({cpu_capability()}), "
          f"{os.cpu_count()} CPUs, load {load:.1f}")
    cases = {
        "import sf_fairseq": "import sf_fairseq",
        "sf-report --help": ("from sf_fairseq.eval import metrics_cli\n"
                             "try:\n    metrics_cli.main(['--help'])\nexcept SystemExit:\n    pass"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        scores = Path(tmp) / "scores.jsonl"
        write_records(scores, args.records)
        cases[f"sf-report on {args.records} records"] = (
            "import logging\nlogging.disable(logging.WARNING)\n"
            "from sf_fairseq.eval import metrics_cli\n"
            f"metrics_cli.main([{str(scores)!r}, '--out', {str(Path(tmp) / 'report')!r}, '--n-boot', '{args.n_boot}'])"
        )
        for name, body in cases.items():
            seconds, imported = timed(body, args.repeats)
            print(f"{name}: {seconds:.2f} s (min of {args.repeats}, fresh interpreter), {describe(imported)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
