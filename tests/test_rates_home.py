"""The clip rates (16 kHz, 25 fps, 640 samples per frame) have one home: sf_fairseq/data/rates.py.

An AST scan of the package sources fails on a new re-declaration: any literal 16000 or 640 in
code, a literal 25 bound to a rate-like name (assignment, argument default, keyword argument,
dict entry, ``.get("fps", 25)`` or ``x.fps or 25`` fallback), and a frame count divided or
multiplied by a literal 25. Docstrings and comments are free to
name the rates. ``tests/`` and ``benchmarks/`` are outside the scan: tests build their media with
their own numbers on purpose, so that they check the package rather than repeat it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("sf_fairseq", "eval", "preprocess", "user_dir")
HOME = REPO_ROOT / "sf_fairseq" / "data" / "rates.py"
ALWAYS_RATE = {16000, 640}  # only ever the sample rate and the samples per frame
FPS_VALUE = 25
RATE_NAME = re.compile(r"fps|rate|^sr$", re.IGNORECASE)
FRAME_NAME = re.compile(r"frame", re.IGNORECASE)

# Re-declarations in files owned elsewhere, each fixed by its owner: (path, line text). Entries
# must still match (a fixed one fails the test until it is removed here), so the list only shrinks.
PENDING: set[tuple[str, str]] = set()


def _is_number(node: ast.AST, values: set[int]) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool) and node.value in values)


def _rate_like(node: ast.AST | None) -> bool:
    """A name, attribute or string key that reads as a rate (``fps``, ``sample_rate``, ...)."""
    if isinstance(node, ast.Name):
        return bool(RATE_NAME.search(node.id))
    if isinstance(node, ast.Attribute):
        return bool(RATE_NAME.search(node.attr))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(RATE_NAME.search(node.value))
    if isinstance(node, ast.Subscript):
        return _rate_like(node.slice)
    if isinstance(node, ast.Call):  # record.get("fps"), getattr(x, "fps")
        return any(_rate_like(a) for a in node.args) or _rate_like(node.func)
    return False


def _names_frames(node: ast.AST) -> bool:
    return any((isinstance(n, ast.Name) and FRAME_NAME.search(n.id))
               or (isinstance(n, ast.Attribute) and FRAME_NAME.search(n.attr)) for n in ast.walk(node))


def _has_fps(node: ast.AST) -> bool:
    return any(_is_number(n, {FPS_VALUE}) for n in ast.walk(node))


def redeclarations(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, why)`` of every re-declared clip rate in one module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if _is_number(node, ALWAYS_RATE):
            found.append((node.lineno, f"literal {node.value}"))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flat = [t for target in targets for t in ast.walk(target)]
            if any(_rate_like(t) for t in flat) and _has_fps(node.value):
                found.append((node.lineno, "25 assigned to a rate"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                if RATE_NAME.search(arg.arg) and _has_fps(default):
                    found.append((default.lineno, f"25 as the default of {arg.arg}"))
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg and RATE_NAME.search(kw.arg) and _is_number(kw.value, {FPS_VALUE}):
                    found.append((kw.value.lineno, f"{kw.arg}=25"))
            if (isinstance(node.func, ast.Attribute) and node.func.attr == "get" and len(node.args) == 2
                    and _rate_like(node.args[0]) and _is_number(node.args[1], {FPS_VALUE})):
                found.append((node.lineno, "25 as a rate's fallback"))
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            if any(_is_number(v, {FPS_VALUE}) for v in node.values) and any(_rate_like(v) for v in node.values):
                found.append((node.lineno, "25 as a rate's fallback"))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mult)):
            for number, other in ((node.left, node.right), (node.right, node.left)):
                if _is_number(number, {FPS_VALUE}) and _names_frames(other):
                    found.append((node.lineno, "a frame count at 25 frames a second"))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if key is not None and _rate_like(key) and _is_number(value, {FPS_VALUE}):
                    found.append((value.lineno, "25 as a rate's value"))
    return sorted(set(found))


def _sources() -> list[Path]:
    files = [p for folder in SCANNED for p in sorted((REPO_ROOT / folder).rglob("*.py"))]
    return [p for p in files if p != HOME and "__pycache__" not in p.parts]


def test_no_module_redeclares_the_clip_rates() -> None:
    problems, pending_seen = [], set()
    for path in _sources():
        rel = path.relative_to(REPO_ROOT).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        for line, why in redeclarations(ast.parse("\n".join(lines), filename=rel)):
            text = lines[line - 1].strip()
            if (rel, text) in PENDING:
                pending_seen.add((rel, text))
            else:
                problems.append(f"{rel}:{line}: {why}: {text}")
    assert not problems, "import the rates from sf_fairseq.data.rates instead:\n" + "\n".join(problems)
    assert pending_seen == PENDING, f"fixed, remove from PENDING: {sorted(PENDING - pending_seen)}"


@pytest.mark.parametrize(
    "source",
    [
        "SAMPLE_RATE = 16_000",
        "def f(x, sample_rate: int = 16000): pass",
        "read(path, 16000)",
        "SAMPLES_PER_FRAME = 640",
        "FPS = 25",
        "class S:\n    fps: float = 25.0",
        "def f(x, *, fps=25): pass",
        "stream.add(codec, rate=25)",
        'fps = float(record.get("fps") or 25.0)',
        'lr = cfg.get("sample_rate", 25)',
        '{"fps": 25}',
        "seconds = plan.n_frames / 25",
        "n = n_frames * 25.0",
    ],
)
def test_the_scan_catches(source: str) -> None:
    assert redeclarations(ast.parse(source))


@pytest.mark.parametrize(
    "source",
    [
        "from sf_fairseq.data.rates import FPS, SAMPLE_RATE",
        "smooth_frames: int = 25",
        "kernel = np.ones(25) / 25",
        "def f(min_frames=25): pass",
        '"""25 fps frames of 640 samples at 16000 Hz"""',
    ],
)
def test_the_scan_leaves_alone(source: str) -> None:
    assert not redeclarations(ast.parse(source))


def test_the_home_is_torch_free_and_clip_inputs_re_exports_it() -> None:
    tree = ast.parse(HOME.read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    from sf_fairseq.data import clip_inputs, rates

    assert (rates.SAMPLE_RATE, rates.FPS, rates.SAMPLES_PER_FRAME) == (16000, 25, 640)
    assert (clip_inputs.SAMPLE_RATE, clip_inputs.FPS, clip_inputs.SAMPLES_PER_FRAME) == (16000, 25, 640)


# Modules that import the rates and import no torch themselves (numpy-only stages).
NUMPY_ONLY = ("sf_fairseq.data.rates", "sf_fairseq.data.audio_io", "sf_fairseq.data.noise",
              "sf_fairseq.preprocess.media",
              "sf_fairseq.preprocess.pack", "sf_fairseq.preprocess.labels", "sf_fairseq.eval.perturb",
              "sf_fairseq.preprocess.synthetic.clips", "sf_fairseq.preprocess.synthetic.recorded")


def test_numpy_only_modules_stay_torch_free() -> None:
    code = f"import sys\nfor m in {NUMPY_ONLY!r}:\n    __import__(m)\n" \
           "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('sf_fairseq'))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
