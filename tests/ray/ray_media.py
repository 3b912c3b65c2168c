"""Media and stand-ins for the Ray pipeline tests (imported by them; pytest puts this folder
on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sf_fairseq.eval.ray_pipeline import PrepareStage
from sf_fairseq.preprocess.synthetic.clips import plan_real, render_frames, write_mp4
from sf_fairseq.preprocess.synthetic.fakes import make_fake
from sf_fairseq.preprocess.synthetic.speech import Voice, speak

SIZE = (256, 256)


def write_talking_faces(folder: Path) -> list[Path]:
    """Two short synthetic talking faces (about 1.5 s): a real one (``real/a.mp4``) and a dub of
    it (``dubbed/a.mp4``: the mouth says another sentence), plus a file that is not a video
    (``broken/b.mp4``)."""
    rng = np.random.default_rng(0)
    real = plan_real(rng, SIZE, speak("hello there", Voice()))
    fake = make_fake(real, "dubbed", np.random.default_rng(1))
    paths = []
    for category, plan in (("real", real), ("dubbed", fake)):
        path = folder / category / "a.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(path, render_frames(plan), plan.audio, SIZE)
        paths.append(path)
    broken = folder / "broken" / "b.mp4"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not a video at all" * 100)
    return paths + [broken]


def crashing_stage(marker: Path, poison: str) -> type[PrepareStage]:
    """A preprocessing stage whose worker process dies, as an out-of-memory kill or a crash in a
    native library would: on every try of the input ``poison``, and on the first item it is
    given while ``marker`` does not exist (creating it first). Defined in a function so that
    Ray ships the class by value."""

    class Crashing(PrepareStage):
        def __call__(self, row):
            if row["id"] == poison:
                os._exit(1)
            if not marker.exists():
                marker.touch()
                os._exit(1)
            return super().__call__(row)

    return Crashing
