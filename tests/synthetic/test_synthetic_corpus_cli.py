"""The corpus CLI end to end, and the real preprocessing pipeline on its clips."""

import csv
import json
import math

import av
import numpy as np
import pytest

from sf_fairseq.preprocess import prepare
from sf_fairseq.preprocess.synthetic import corpus, corpus_engine
from sf_fairseq.preprocess.synthetic.fakes import LABELS


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        corpus.main(["--help"])
    assert e.value.code == 0
    assert "--n-train" in capsys.readouterr().out


@pytest.mark.slow
def test_corpus_then_prepare(tmp_path):
    out = tmp_path / "corpus"
    args = ["--out", str(out), "--n-train", "1", "--n-test", "1", "--seed", "3", "--quick",
            "--categories", "real", "partial", "offset_small"]
    assert corpus.main(args) == 0
    lines = (out / "test" / "test_list.txt").read_text().splitlines()
    assert lines == ["real/s00000.mp4 1", "partial/s00000.mp4 0", "offset_small/s00000.mp4 1"]
    assert (out / "train" / "train_list.txt").read_text() == "real/t00000.mp4 1\n"
    rows = list(csv.DictReader(open(out / "test" / "test.csv")))
    assert [r["category"] for r in rows] == ["real", "partial", "offset_small"]
    assert float(rows[1]["window_end"]) > float(rows[1]["window_start"]) >= 0
    assert rows[2]["offset_seconds"] and int(rows[2]["label"]) == LABELS["offset_small"]
    meta = [json.loads(line) for line in open(out / "test" / "metadata.jsonl")]
    assert meta[0]["text"] and meta[0]["phonemes"] and meta[0]["face"]["source"]
    assert meta[1]["window_frames"] and meta[1]["mouth_text"]
    # Stored at the source's recording-channel rate: the 25 fps rendering converted by nearest
    # timestamp (the preprocessing below reads it back at 25 fps, plan.n_frames frames).
    fps = meta[0]["channel"]["fps"]
    with av.open(str(out / "test" / "real" / "s00000.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == math.ceil(meta[0]["n_frames"] * fps / 25)

    # Resume: nothing is rendered again; a different seed in the same folder is refused.
    mtime = (out / "test" / "real" / "s00000.mp4").stat().st_mtime_ns
    assert corpus.main(args) == 0
    assert (out / "test" / "real" / "s00000.mp4").stat().st_mtime_ns == mtime
    with pytest.raises(SystemExit):
        corpus.main(["--out", str(out), "--n-train", "1", "--n-test", "1", "--seed", "4", "--quick"])

    # The real preprocessing finds the face in every clip, and the mouth it crops opens
    # when the renderer opened it.
    prepared = tmp_path / "prepared"
    assert prepare.main([str(out / "test"), str(prepared), "--split", "test"]) == 0
    plan = corpus_engine.source_plan(3, "test", 0, (320, 320), True)
    for category in ("real", "partial", "offset_small"):
        status = json.loads((prepared / "status" / category / "s00000.json").read_text())
        assert status["status"] == "ok" and status["n_frames"] == plan.n_frames
    marks = np.load(prepared / "landmarks" / "real" / "s00000.npz")["landmarks"][0]
    gap = np.linalg.norm(marks[:, 66] - marks[:, 62], axis=1) / np.linalg.norm(marks[:, 54] - marks[:, 48], axis=1)
    assert np.corrcoef(gap, plan.mouth.open)[0, 1] > 0.9
    with av.open(str(prepared / "video" / "real" / "s00000.mp4")) as c:
        roi = np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)])
    assert roi.shape == (plan.n_frames, 96, 96)
    # Vertical opening of the dark cavity in the ROI's centre columns.
    centre = roi[:, 20:76, 40:56].astype(float)
    dark = (centre < 0.5 * np.median(centre, axis=(1, 2), keepdims=True)).sum(axis=(1, 2)) / 16
    assert np.corrcoef(dark, plan.mouth.open)[0, 1] > 0.85
