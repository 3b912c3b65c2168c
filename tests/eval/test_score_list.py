"""sf-score-batch called as a function (batch_engine.score_list: BatchJob -> BatchSummary): the same
records, fingerprint and exit status as the command with the same options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sf_fairseq.eval import batch_engine, score_batch
from sf_fairseq.eval.results import latest_records
from sf_fairseq.eval.scorer_settings import ScorerSettings

FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"


@pytest.mark.slow
def test_score_list_matches_the_command(tmp_path, shared_dir, envelope_clip):
    root = tmp_path / "mouths"
    rng = np.random.default_rng(3)
    envelope_clip(root / "real" / "a.mp4", rng.uniform(0, 1, 30))
    envelope_clip(root / "fake" / "b.mp4", rng.uniform(0, 1, 30))
    listing = tmp_path / "list.txt"
    listing.write_text("real/a.mp4 1\nfake/b.mp4 0\nreal/missing.mp4 1\n")
    checkpoint = shared_dir / FIXTURE
    scorer = ScorerSettings(str(checkpoint), cpu=True, precision="fp32", max_offset=5, max_seconds=0)
    done = batch_engine.score_list(batch_engine.BatchJob(listing, tmp_path / "typed", scorer, data_root=root,
                                                       num_workers=0, progress=False))
    assert done.exit_status == 1  # the missing clip
    assert (done.summary["items"], done.summary["ok"], done.summary["not_ok"]) == (3, 2, 1)
    status = score_batch.main(["--list", str(listing), "--data-root", str(root), "--path", str(checkpoint),
                               "--results-path", str(tmp_path / "cli"), "--cpu", "--precision", "fp32",
                               "--max-offset", "5", "--max-seconds", "0", "--num-workers", "0", "--no-progress"])
    assert status == done.exit_status
    fingerprints = [json.loads((tmp_path / out / "fingerprint.json").read_text()) for out in ("typed", "cli")]
    assert fingerprints[0] == fingerprints[1]
    typed, cli = (latest_records([tmp_path / out / "scores.jsonl"]) for out in ("typed", "cli"))
    assert list(typed) == list(cli)
    assert [(r.status, r.score, r.verdict) for r in typed.values()] == [(r.status, r.score, r.verdict)
                                                                        for r in cli.values()]
    # A rerun of the same job reuses every scored item.
    again = batch_engine.score_list(batch_engine.BatchJob(listing, tmp_path / "typed", scorer, data_root=root,
                                                        num_workers=0, progress=False))
    assert (again.exit_status, again.summary["skipped"]) == (1, 2)


def test_the_commands_options_build_the_jobs_defaults():
    """A job built from the command's defaults equals the job with its own defaults (the two
    cannot drift apart), and every option reaches the job."""
    scorer = ScorerSettings("m.pt")
    parse = score_batch.build_parser().parse_args
    default = score_batch.job_from_arguments(parse(["--list", "l.txt", "--path", "m.pt", "--results-path", "out"]))
    assert default == batch_engine.BatchJob("l.txt", "out", scorer)
    job = score_batch.job_from_arguments(parse([
        "data", "--gen-subset", "valid", "--path", "m.pt", "--results-path", "out", "--batch-size", "3",
        "--max-frames", "900", "--num-workers", "0", "--num-shards", "2", "--shard-id", "1", "--beam", "7",
        "--report", "--n-boot", "10", "--no-progress", "--overwrite", "--cpu", "--alpha", "0.1"]))
    assert (job.list_path, job.data, job.gen_subset, job.batch_size, job.max_frames, job.num_workers) == \
        (None, "data", "valid", 3, 900, 0)
    assert (job.num_shards, job.shard_id, job.beam, job.report, job.n_boot, job.progress, job.overwrite) == \
        (2, 1, 7, True, 10, False, True)
    assert job.scorer.cpu and job.verdict.settings.alpha == 0.1
