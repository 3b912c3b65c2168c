"""Demo stage keys: a stage that scores with a checkpoint is keyed by the checkpoint's content
and the score rule, so a changed model or setting is never reused."""

from __future__ import annotations

from pathlib import Path

from sf_fairseq.eval import demo


def test_scoring_stage_key_follows_checkpoint_content_and_score_rule(tmp_path: Path, monkeypatch) -> None:
    checkpoint = tmp_path / "model_2" / "checkpoint_last.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights of one run")
    key = demo.scoring_settings(checkpoint)
    assert key["max_offset"] == demo.SCORE_OPTIONS.max_offset and key["precision"] == "fp32"
    scorer = demo.scorer_settings(checkpoint)
    assert scorer.max_offset == key["max_offset"] and scorer.max_seconds == (key["max_seconds"] or 0)
    # the key's precision is what the stage asks for, not what `auto` would pick on this host
    assert scorer.precision == key["precision"]

    stages = demo.Stages(tmp_path)
    runs = []
    stages.run("score", demo.scoring_settings(checkpoint), lambda: runs.append(1))
    stages = demo.Stages(tmp_path)
    stages.run("score", demo.scoring_settings(checkpoint), lambda: runs.append(2))
    assert runs == [1]  # same checkpoint content: reused
    checkpoint.write_bytes(b"weights of another run")  # e.g. retrained by hand in place
    stages = demo.Stages(tmp_path)
    stages.run("score", demo.scoring_settings(checkpoint), lambda: runs.append(3))
    assert runs == [1, 3]
    monkeypatch.setattr(demo, "SCORE_OPTIONS", demo.ScoreOptions(max_offset=5))
    stages = demo.Stages(tmp_path)
    stages.run("score", demo.scoring_settings(checkpoint), lambda: runs.append(4))
    assert runs == [1, 3, 4]


def test_a_stage_with_tuple_settings_is_reused(tmp_path: Path) -> None:
    """Settings are compared as they read back from the marker (JSON has no tuples): the
    lip-reading stage's key holds the frame size as a tuple."""
    runs = []
    demo.Stages(tmp_path).run("lipreading", {"size": (224, 224)}, lambda: runs.append(1))
    demo.Stages(tmp_path).run("lipreading", {"size": (224, 224)}, lambda: runs.append(2))
    assert runs == [1]
