"""A non-editable install works: build the wheel, install it without dependencies into a
throwaway folder placed first on the path, and use what depends on package files there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["setup.py", "pyproject.toml", "README.md", "sf_fairseq", "preprocess", "eval", "user_dir"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:  # build from a copy: the checkout stays free of build/ and egg-info
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(work / "dist"), str(src)], check=True)
    (wheel,) = (work / "dist").glob("sf_fairseq-*.whl")
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    shutil.rmtree(src)  # nothing may still come from the copied sources
    return target, env


def run_python(code: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_installed_paths_point_inside_the_wheel(installed, tmp_path):
    target, env = installed
    out = run_python(
        "from sf_fairseq import paths\n"
        "print(paths.user_dir()); print(paths.config_dir('pretrain')); print(paths.config_dir('finetune'))",
        env, tmp_path)
    user_dir, pretrain, finetune = (Path(line) for line in out.split())
    for folder in (user_dir, pretrain, finetune):
        assert folder.is_relative_to(target), folder
    assert (user_dir / "__init__.py").is_file()
    assert (pretrain / "tiny_cpu.yaml").is_file() and (finetune / "tiny_cpu.yaml").is_file()


@pytest.mark.slow
def test_installed_user_dir_registers_the_plugin_in_fairseq(installed, tmp_path):
    _, env = installed
    out = run_python(
        "from argparse import Namespace\n"
        "from fairseq import utils\n"
        "from fairseq.models import MODEL_REGISTRY\n"
        "from fairseq.tasks import TASK_REGISTRY\n"
        "from sf_fairseq.paths import user_dir\n"
        "utils.import_user_module(Namespace(user_dir=str(user_dir())))\n"
        "print('av_hubert' in MODEL_REGISTRY, 'av_hubert_pretraining' in TASK_REGISTRY)",
        env, tmp_path)
    assert out.split() == ["True", "True"]


@pytest.mark.slow
def test_installed_package_data_is_found(installed, tmp_path):
    target, env = installed
    out = run_python(
        "from sf_fairseq.preprocess.mean_face import load_mean_face\n"
        "from sf_fairseq.preprocess.synthetic import faces, recorded\n"
        "print(load_mean_face().shape)\n"
        "print(all((faces.FACES_DIR / f).is_file() for f in faces.PHOTO_FILES), faces.FACES_DIR)\n"
        "print(len(recorded.load_recordings()), recorded.SPEECH_DIR)",
        env, tmp_path)
    shape, photos, recordings = out.strip().split("\n")
    assert shape == "(68, 2)"
    assert photos.split()[0] == "True" and Path(photos.split()[1]).is_relative_to(target)
    assert int(recordings.split()[0]) >= 5 and Path(recordings.split()[1]).is_relative_to(target)


@pytest.mark.slow
def test_hydra_config_dir_of_the_wheel_composes(installed, tmp_path):
    """fairseq-hydra-train reads the installed config dir with the installed user dir."""
    _, env = installed
    out = run_python(
        "import subprocess, sys\n"
        "from sf_fairseq.paths import config_dir, user_dir\n"
        "done = subprocess.run([sys.executable, '-m', 'fairseq_cli.hydra_train', '--config-dir',"
        " str(config_dir('pretrain')), '--config-name', 'tiny_cpu', '--cfg', 'job',"
        " f'common.user_dir={user_dir()}', 'task.data=/nonexistent', 'task.label_dir=/nonexistent'],"
        " capture_output=True, text=True)\n"
        "print(done.returncode); print(done.stdout); print(done.stderr, file=sys.stderr)",
        env, tmp_path)
    assert out.split("\n")[0] == "0"
    assert "av_hubert_pretraining" in out and "user_dir:" in out


@pytest.mark.slow
def test_installed_demo_trains_with_the_wheels_config_and_user_dir(installed, tmp_path):
    """The demo's fairseq-hydra-train command names the installed package's folders, not a
    checkout's (it used to find them through ``Path(__file__).parents[1]``)."""
    target, env = installed
    out = run_python(
        "from pathlib import Path\n"
        "from sf_fairseq.eval import demo\n"
        "class Stop(Exception):\n    pass\n"
        "def capture(command, **kwargs):\n"
        "    print(command[command.index('--config-dir') + 1])\n"
        "    print(next(c for c in command if c.startswith('common.user_dir=')))\n"
        "    raise Stop\n"
        "demo.subprocess.Popen = capture\n"
        "try:\n    demo._hydra_train(Path('save'), Path('log.txt'), 1, [])\n"
        "except Stop:\n    pass\n",
        env, tmp_path)
    config_dir, user_dir = out.split("\n")[:2]
    assert Path(config_dir).is_relative_to(target) and (Path(config_dir) / "tiny_cpu.yaml").is_file()
    assert user_dir.startswith("common.user_dir=")
    user_dir = Path(user_dir.split("=", 1)[1])
    assert user_dir.is_relative_to(target) and (user_dir / "__init__.py").is_file()


@pytest.mark.slow
def test_installed_schemas_and_every_console_script_resolve(installed, tmp_path):
    # The record schemas are package data, and every console script of the wheel's entry points
    # names an importable module with its function (a moved command would break an install).
    target, env = installed
    out = run_python(
        "import importlib, importlib.metadata\n"
        "from sf_fairseq.records import PrepareRecord, ScoreRecord, Transcripts, schema_path\n"
        "print(all(schema_path(r).is_file() for r in (ScoreRecord, Transcripts, PrepareRecord)),"
        " schema_path(ScoreRecord))\n"
        "scripts = importlib.metadata.distribution('sf_fairseq').entry_points.select(group='console_scripts')\n"
        "print(len(scripts), all(callable(s.load()) for s in scripts))",
        env, tmp_path)
    schemas, scripts = out.strip().split("\n")
    assert schemas.split()[0] == "True" and Path(schemas.split()[1]).is_relative_to(target)
    count, loaded = scripts.split()
    assert int(count) >= 19 and loaded == "True"
