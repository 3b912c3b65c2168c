"""Re-score a record and say whether it reproduces, and if not, what changed.

Examples::

    sf-verify out/clip.score.json                 # a score_video result (its first face track)
    sf-verify out/clip.score.json --track 1       # its second face track
    sf-verify out/scores.jsonl --id clip_0007     # one record of a batch

The record's ``provenance`` (:mod:`.provenance`) names the files the scorer read, the
checkpoint, the layer and every scoring setting. Verification:

1. hashes the input, the scored files and the checkpoint again and lists every file that is
   missing or whose SHA-256 changed;
2. compares the settings the checkpoint implies now (its input transform) with the recorded
   ones, and the running code and library versions with the recorded ones (differences are
   listed; they explain a mismatch but do not stop the check);
3. re-scores the recorded files with the recorded checkpoint, layer, precision and settings and
   compares ``score``, ``best_offset``, the ``curve`` and (when recorded) ``score_speech``.

Reproduction is **exact** (bit-identical floats) when the record was made on CPU in float32 and
is verified on CPU in float32; otherwise values must agree within ``--atol`` (default 1e-4 for
float32 on another device, 2e-2 for bf16/fp16) and the best offsets must be equal.

Exit status: 0 when the values reproduce and every recorded file is present with its recorded
hash; 1 otherwise (the report says what changed); 2 cannot verify (no provenance, scored files
or checkpoint missing).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sf_fairseq._logging import LOG_FORMAT, command_logging
from sf_fairseq.records import ScoreRecord
from sf_fairseq.resume import differing_keys, file_sha256

from .encode import InputSettings, load_clip
from .pipeline import ScoreOptions, load_scorer
from .provenance import code_version, library_versions, score_settings
from .speech import SpeechSettings, analyse_wav, gated_score

logger = logging.getLogger(__name__)

TOLERANCE = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 2e-2}


class CannotVerify(RuntimeError):
    """The record cannot be re-scored (the message says why)."""


@dataclass
class Verification:
    """Outcome of :func:`verify_record`.

    Attributes:
        reproduced: True when every compared value agrees (exactly or within ``atol``).
        intact: True when every recorded file is present with its recorded hash.
        exact: whether bit-identical values were required.
        atol: the tolerance used (0 when exact).
        changed_files: ``role: what changed`` for missing or modified files and checkpoint.
        changed_settings: dotted names of settings that differ from the recorded ones.
        environment: dotted names of code/library versions that differ from the recorded ones.
        values: ``name: {"recorded", "now"}`` of every compared value (curves: max abs diff).
    """

    reproduced: bool
    intact: bool
    exact: bool
    atol: float
    changed_files: dict[str, str] = field(default_factory=dict)
    changed_settings: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def load_record(path: str | os.PathLike, record_id: str | None = None,
                track: int = 0) -> ScoreRecord | dict[str, Any]:
    """One record from a ``.json`` result (a record, or a score_video result whose face track
    ``track`` or top level carries ``provenance``) or a ``.jsonl`` score file (``record_id``
    required; the last record of that id wins, a :class:`~sf_fairseq.records.ScoreRecord`).

    Raises:
        CannotVerify: unreadable file, no such id or track, or no provenance.
    """
    path = Path(path)
    try:
        if path.suffix == ".jsonl":
            if record_id is None:
                raise CannotVerify(f"{path}: a JSONL score file needs --id")
            from .results import latest_records

            scored = latest_records([path]).get(record_id)
            if scored is None:
                raise CannotVerify(f"{path}: no record with id {record_id!r}")
            if not isinstance(scored.provenance, dict):
                raise CannotVerify(f"{path}: the record has no provenance (made before provenance was recorded?)")
            return scored
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CannotVerify(f"cannot read {path}: {err}") from err
    if not isinstance(record, dict):
        raise CannotVerify(f"{path}: not a JSON object")
    if "provenance" not in record and record.get("tracks"):
        if not 0 <= track < len(record["tracks"]):
            raise CannotVerify(f"{path}: no face track {track} (it has {len(record['tracks'])})")
        record = record["tracks"][track]
    if not isinstance(record.get("provenance"), dict):
        raise CannotVerify(f"{path}: the record has no provenance (made before provenance was recorded?)")
    return record


def changed_files(provenance: Mapping[str, Any]) -> dict[str, str]:
    """Role -> what changed, for the input, the scored files and the checkpoint."""
    entries = {"input": {"path": provenance.get("input"), "sha256": provenance.get("input_sha256")},
               **{f"files.{role}": e for role, e in (provenance.get("files") or {}).items()},
               "checkpoint": {"path": provenance.get("checkpoint"),
                              "sha256": provenance.get("checkpoint_sha256")}}
    out = {}
    for role, entry in entries.items():
        path = entry.get("path")
        if not path or not os.path.isfile(path):
            out[role] = f"missing: {path}"
            continue
        now = file_sha256(path)
        if now != entry.get("sha256"):
            out[role] = f"sha256 changed: recorded {entry.get('sha256')}, now {now} ({path})"
    return out


def _close(a: float | None, b: float | None, exact: bool, atol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a == b if exact else abs(a - b) <= atol


def verify_record(
    record: ScoreRecord | Mapping[str, Any],
    device: str = "cpu",
    atol: float | None = None,
    trust_checkpoint: bool = False,
) -> Verification:
    """Re-score ``record`` from its provenance (module docstring).

    Raises:
        CannotVerify: files or checkpoint missing, or the provenance lacks what is needed.
    """
    if record.get("score") is None:
        raise CannotVerify("nothing to re-score: the input was not scored (reasons: "
                           f"{', '.join(record.get('reasons') or ()) or 'none recorded'})")
    prov = record["provenance"]
    files = changed_files(prov)
    missing = [role for role, why in files.items() if why.startswith("missing") and role != "input"]
    if missing:
        raise CannotVerify("cannot re-score: " + "; ".join(f"{r} {files[r]}" for r in missing))
    try:
        recorded = prov["settings"]
        options = ScoreOptions(**recorded["score"])
        inputs = InputSettings(**recorded["input"])
        speech = SpeechSettings(**{k: v for k, v in recorded["speech"].items() if k != "detector"})
        video, audio = prov["files"]["video"]["path"], prov["files"]["audio"]["path"]
        precision = prov["precision"]
    except (KeyError, TypeError) as err:
        raise CannotVerify(f"incomplete provenance: {err!r}") from err
    exact = precision == "fp32" and str(prov.get("device")) == "cpu" and str(device) == "cpu"
    tol = 0.0 if exact else (TOLERANCE.get(precision, 2e-2) if atol is None else atol)

    scorer = load_scorer(prov["checkpoint"], device, prov.get("layer"), precision, trust_checkpoint, options)
    implied = score_settings(scorer, speech)  # input transform as the checkpoint gives it now
    settings_changed = [f"settings.{k}" for k in differing_keys(recorded, implied)]
    scorer.settings = inputs  # re-score with the recorded settings all the same
    environment = [f"code_version.{k}" for k in differing_keys(prov.get("code_version") or {}, code_version())]
    environment += [f"versions.{k}" for k in differing_keys(prov.get("versions") or {}, library_versions())]

    clip = load_clip(video, audio, inputs, options.max_seconds, options.fps)
    result = scorer.score_clips([clip])[0]
    values: dict[str, Any] = {
        "score": {"recorded": record.get("score"), "now": result.score},
        "best_offset": {"recorded": record.get("best_offset"), "now": result.best_offset},
    }
    ok = _close(record.get("score"), result.score, exact, tol)
    ok &= record.get("best_offset") == result.best_offset
    if record.get("curve") is not None:
        diff = float(np.max(np.abs(np.asarray(record["curve"], dtype=np.float64) - np.asarray(result.curve))))
        values["curve"] = {"max_abs_diff": diff}
        ok &= diff == 0.0 if exact else diff <= tol
    if "score_speech" in record:
        gated = gated_score(result.sims, analyse_wav(audio, speech, options.max_seconds).speech, options.fps)
        values["score_speech"] = {"recorded": record["score_speech"], "now": gated.score_speech}
        ok &= _close(record["score_speech"], gated.score_speech, exact, tol)
    return Verification(reproduced=bool(ok), intact=not files, exact=exact, atol=tol, changed_files=files,
                        changed_settings=settings_changed, environment=environment, values=values)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sf-verify",
        description="Re-score a score record from its provenance and report whether it reproduces "
        "(exact on CPU float32, within --atol otherwise) and which input, checkpoint or setting "
        "changed if not. Exit status: 0 reproduced with every file intact, 1 not, 2 cannot verify.",
    )
    p.add_argument("record", help="a .json result/record or a .jsonl score file (with --id)")
    p.add_argument("--id", help="record id in a .jsonl score file")
    p.add_argument("--track", type=int, default=0,
                   help="face track (0 = the first, which gives the verdict) of a sf-score-video result")
    p.add_argument("--device", default="cpu", help="device to re-score on (exact comparison only on cpu)")
    p.add_argument("--atol", type=float, default=None,
                   help="tolerance when not exact (default: 1e-4 for fp32, 2e-2 for bf16/fp16)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary pickled objects in the checkpoint (only for files you trust)")
    p.add_argument("--json", help="also write the verification as JSON to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        try:
            record = load_record(args.record, args.id, args.track)
            outcome = verify_record(record, args.device, args.atol, args.trust_checkpoint)
        except (CannotVerify, OSError, ValueError, pickle.UnpicklingError) as err:
            print(f"cannot verify: {err}")
            return 2
        mode = "exact" if outcome.exact else f"within {outcome.atol:g}"
        print(f"{'REPRODUCED' if outcome.reproduced else 'NOT REPRODUCED'} ({mode}); "
              f"{'files intact' if outcome.intact else 'FILES CHANGED'}")
        for name, value in outcome.values.items():
            print(f"  {name}: {value}")
        for role, why in outcome.changed_files.items():
            print(f"  changed {role}: {why}")
        for name in outcome.changed_settings:
            print(f"  setting differs from the checkpoint's: {name}")
        for name in outcome.environment:
            print(f"  environment differs: {name}")
        if args.json:
            from sf_fairseq.resume import atomic_write_text

            atomic_write_text(args.json, json.dumps(outcome.as_json(), indent=2) + "\n")
        return 0 if outcome.reproduced and outcome.intact else 1


if __name__ == "__main__":
    sys.exit(main())
