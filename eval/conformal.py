"""Conformal p-values of lip-speech scores against a reference set of real clips.

A reference set holds one score per *real* clip, scored with the same checkpoint, layer and
settings as the clips to judge (optionally one set per group: language, compression, source,
...). For a clip with score ``s`` and a reference set ``r_1..r_n``::

    p = (1 + #{j : r_j <= s}) / (n + 1)

Low scores mean disagreement between lips and speech, so a small ``p`` says the clip agrees
less than almost every real reference clip.

Guarantee (split-conformal): if the clip is real and its score is exchangeable with the
reference scores (same source distribution, same model and settings, same gating), then
``P(p <= alpha) <= alpha`` for every ``alpha``; calling a clip fake when ``p < alpha`` therefore
has a false-positive rate of at most ``alpha``. The probability is over the draw of both the
reference set and the clip: for one fixed reference set the realised rate scatters around
``alpha`` (Beta-distributed, spread about ``sqrt(alpha / n)``). With ties the ``<=`` keeps the
bound. Nothing is promised for real clips from another distribution than the reference's;
that is why sets can be grouped, and why the clips gated out as unusable (too little speech,
silent audio, ...) are also left out of the reference set (:func:`build_reference_set`).

The smallest reachable p-value is ``1 / (n + 1)``: a set of ``n`` clips can only ever call a
clip fake at level ``alpha`` when ``n + 1 > 1 / alpha`` (``n >= 100`` for ``alpha = 0.01``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from sf_fairseq.resume import atomic_write_text

FORMAT = "sf-reference-set/1"
DEFAULT_ALPHA = 0.01
SCORE_FIELDS = ("score_speech", "score")
# Provenance keys that must agree between the reference clips and a clip being judged: what
# changes the score of a given input.
MODEL_KEYS = ("checkpoint_sha256", "layer", "settings")


def conformal_p_values(scores: Iterable[float], reference: Iterable[float]) -> np.ndarray:
    """``(1 + #{r <= s}) / (n + 1)`` for every ``s`` in ``scores`` against ``reference``.

    Raises:
        ValueError: an empty or non-finite reference, or a non-finite score.
    """
    ref = np.sort(np.asarray(list(reference), dtype=np.float64))
    s = np.asarray(list(scores), dtype=np.float64)
    if ref.size == 0:
        raise ValueError("empty reference set")
    if not np.isfinite(ref).all() or not np.isfinite(s).all():
        raise ValueError("scores and reference scores must be finite")
    at_or_below = np.searchsorted(ref, s, side="right")
    return (1.0 + at_or_below) / (ref.size + 1.0)


def conformal_p_value(score: float, reference: Iterable[float]) -> float:
    """The p-value of one score (see :func:`conformal_p_values`)."""
    return float(conformal_p_values([score], reference)[0])


def min_reference_size(alpha: float) -> int:
    """Smallest ``n`` for which ``p < alpha`` is reachable: ``1 / (n + 1) < alpha``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return math.floor(1.0 / alpha)


@dataclass
class ReferenceSet:
    """Real-clip scores for conformal p-values, per group.

    Attributes:
        score_field: record field the scores come from (``score_speech`` or ``score``); a clip
            is judged on the same field.
        group_by: record field the sets are grouped by (None: one group, ``"all"``).
        groups: group value -> sorted reference scores.
        model: the provenance keys :data:`MODEL_KEYS` shared by every reference record (empty
            when the records carried no provenance).
        sources: the record files it was built from.
        refused: reason -> number of records left out.
        created_utc: ISO time of creation.
    """

    score_field: str
    group_by: str | None
    groups: dict[str, list[float]]
    model: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    created_utc: str = ""

    def group_of(self, record: Mapping[str, Any]) -> str:
        """The group a record belongs to (``"all"`` without grouping)."""
        return "all" if self.group_by is None else str(record.get(self.group_by))

    def scores_for(self, record: Mapping[str, Any]) -> list[float] | None:
        """The reference scores that apply to ``record`` (None: its group has no set)."""
        return self.groups.get(self.group_of(record))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReferenceSet":
        """Read a file written by :meth:`save`.

        Raises:
            ValueError: unreadable, another format, or scores that are not finite numbers.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read reference set {os.fspath(path)!r}: {err}") from err
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a reference set ({FORMAT})")
        try:
            ref = cls(**data)
            ref.groups = {str(g): sorted(float(s) for s in v) for g, v in ref.groups.items()}
        except (TypeError, ValueError) as err:
            raise ValueError(f"malformed reference set {os.fspath(path)!r}: {err}") from err
        if ref.score_field not in SCORE_FIELDS:
            raise ValueError(f"{os.fspath(path)!r}: unknown score field {ref.score_field!r}")
        if not all(np.isfinite(v).all() for v in ref.groups.values()):
            raise ValueError(f"{os.fspath(path)!r}: non-finite reference scores")
        return ref


def model_key(provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """The :data:`MODEL_KEYS` of a record's ``provenance`` (empty without one)."""
    if not provenance:
        return {}
    return {k: provenance.get(k) for k in MODEL_KEYS}


def refusal(record: Mapping[str, Any], score_field: str, blocking: frozenset[str]) -> str | None:
    """Why ``record`` may not enter a reference set (None: it may).

    Only scored (``status`` ok), real (``label`` 1) clips with a finite ``score_field`` and none
    of the ``blocking`` reason codes enter: a clip the verdict would not judge is not part of
    the population the p-value speaks about.
    """
    if record.get("status") != "ok":
        return "not_ok"
    if record.get("label") != 1:
        return "not_real"
    value = record.get(score_field)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"no_{score_field}"
    if blocking.intersection(record.get("reasons") or ()):
        return "inconclusive_input"
    return None


def build_reference_set(
    records: Iterable[Mapping[str, Any]],
    score_field: str = "score_speech",
    group_by: str | None = None,
    blocking: Iterable[str] = (),
    sources: Iterable[str] = (),
) -> ReferenceSet:
    """A :class:`ReferenceSet` from score records of real clips.

    Args:
        records: score records (one per clip; see :mod:`.results`).
        score_field: ``score_speech`` (speech-gated, the default) or ``score`` (the paper's).
        group_by: record field to group by (e.g. ``category``, ``language``), None for one set.
        blocking: reason codes that keep a record out (the verdict's input reasons).
        sources: record files, stored for provenance.

    Raises:
        ValueError: an unknown score field, no usable record, or records scored with different
            checkpoints/layers/settings (their scores are not comparable).
    """
    if score_field not in SCORE_FIELDS:
        raise ValueError(f"score_field must be one of {SCORE_FIELDS}, got {score_field!r}")
    blocking = frozenset(blocking)
    groups: dict[str, list[float]] = {}
    refused: dict[str, int] = {}
    models: dict[str, dict[str, Any]] = {}
    for record in records:
        why = refusal(record, score_field, blocking)
        if why is not None:
            refused[why] = refused.get(why, 0) + 1
            continue
        key = model_key(record.get("provenance"))
        models.setdefault(json.dumps(key, sort_keys=True), key)
        group = "all" if group_by is None else str(record.get(group_by))
        groups.setdefault(group, []).append(float(record[score_field]))
    if not groups:
        raise ValueError(f"no usable real records (left out: {refused or 'none given'})")
    if len(models) > 1:
        raise ValueError(
            "the records were scored with different checkpoints, layers or settings; build one "
            f"reference set per model ({len(models)} found)"
        )
    return ReferenceSet(
        score_field=score_field,
        group_by=group_by,
        groups={g: sorted(v) for g, v in groups.items()},
        model=next(iter(models.values())),
        sources=[os.fspath(s) for s in sources],
        refused=refused,
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
