"""Temporal localisation metrics exactly as the official AV-Deepfake1M SDK computes them.

Re-implemented (not imported: the ``avdeepfake1m`` wheel pins numpy 1.26 and pulls lightning,
torchvision and opencv) from ``ControlNet/AV-Deepfake1M`` @2c72275, ``src/loc_1d.rs`` (the Rust
extension behind ``avdeepfake1m.evaluation.ap_1d`` / ``ar_1d`` / ``ap_ar_1d``), in float32 as
there. Inputs are the SDK's:

* **proposals**: ``{file: [[confidence, start, end], ...]}`` (the prediction JSON), ``start`` and
  ``end`` divided by ``fps`` before use (the README and ``examples/batfd/evaluate.py`` call it with
  ``fps=1``: times in seconds);
* **labels**: the metadata entries, in file order, each with ``file`` and the ground-truth
  segments (``fake_segments`` for AV-Deepfake1M, ``fake_periods`` for LAV-DF) in seconds.

**AP@IoU t** (``get_values`` + ``calc_ap_scores``):

1. per file, ``IoU = max(0, min(e1, e2) - max(s1, s2)) / (max(e1, e2) - min(s1, s2))`` between
   every proposal and every label (0/0 gives NaN, which matches nothing);
2. matching, per file: for each label in metadata order, the *first proposal in the file's
   order* (not by confidence) with ``IoU > t`` (strict) that is not matched yet becomes a true
   positive; every other proposal is a false positive (all of them in a file without labels);
3. all files' proposals are pooled in metadata order and stably sorted by descending
   confidence (ties keep that order); ``precision_k = TP_k / k``, ``recall_k = TP_k / N`` with
   ``N`` the total number of labels;
4. the curve is ``(1, 0)`` followed by the points ``(recall_k, precision_k)`` from the last
   rank to the first; ``AP = sum_j |x_{j+1} - x_j| * max(y_0 .. y_j)``. Read from the first
   rank, this is the area under the interpolated precision envelope **except the step from
   recall 0 to the first proposal's recall**, which the sum never reaches (a quirk kept as is:
   one true positive ranked first and nothing else gives AP 0).
   With no proposal at all AP is 0; with no label at all it is NaN (0/0).

**AR@n** (``calc_ar_values`` + ``calc_ar_scores``), over IoU thresholds ``T`` (the README uses
0.5:0.05:0.95):

1. per file, only the *first* ``min(max(n_list), M)`` proposals in the file's order are kept
   (the SDK does not sort: write proposals by descending confidence); ``n`` is clamped to the
   number kept;
2. per label, the best IoU among the first ``n`` proposals; a label is recalled at ``t`` when
   that best IoU is ``> t``; ``TP(t, n)`` and ``FN(t, n) = labels - TP`` per file;
3. a file **with no proposal contributes neither TP nor FN** (its labels are not counted),
   another quirk kept as is;
4. TP and FN are summed over files; ``recall(t, n) = TP / (TP + FN)`` (0 when both are 0);
   ``AR@n`` is the mean of ``recall(t, n)`` over ``T``.

A file of the labels missing from the proposals is an error (the SDK panics on it). Note that the
SDK's JSON reader (serde-ndim 1.1.0) cannot read an empty proposal list ``[]`` at all; the
writers of :mod:`.challenge` therefore never write one, and the functions here accept an empty
list with the semantics of the code above.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

AP_IOU_THRESHOLDS = (0.5, 0.75, 0.9, 0.95)
AR_N_PROPOSALS = (50, 30, 20, 10, 5)
AR_IOU_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)

Labels = Sequence[tuple[str, Sequence[Sequence[float]]]]


def _proposal_array(rows: Sequence[Sequence[float]], file: str) -> np.ndarray:
    arr = np.asarray(rows, dtype=np.float32).reshape(-1, 3) if len(rows) else np.zeros((0, 3), np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] != len(rows):
        raise ValueError(f"{file}: proposals must be [confidence, start, end] rows, got {rows!r}")
    return arr


def _label_array(segments: Sequence[Sequence[float]]) -> np.ndarray:
    return np.asarray(segments, dtype=np.float32).reshape(-1, 2)


def iou_1d(proposals: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """IoU of ``(M, 2)`` against ``(N, 2)`` intervals -> ``(M, N)`` float32 (NaN for 0/0)."""
    ps, pe = proposals[:, :1], proposals[:, 1:2]
    ls, le = labels[None, :, 0], labels[None, :, 1]
    inter = np.maximum(np.minimum(pe, le) - np.maximum(ps, ls), np.float32(0))
    union = np.maximum(pe, le) - np.minimum(ps, ls)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (inter / union).astype(np.float32)


def _file_ious(proposals: np.ndarray, labels: np.ndarray, fps: float) -> np.ndarray:
    if labels.shape[0] == 0:
        return np.zeros((proposals.shape[0], 0), np.float32)
    return iou_1d(proposals[:, 1:] / np.float32(fps), labels)


def _match(proposals: np.ndarray, labels: np.ndarray, threshold: float, fps: float) -> np.ndarray:
    """``is_tp`` of one file's proposals (step 2 of AP)."""
    hits = _file_ious(proposals, labels, fps) > np.float32(threshold)
    matched: list[int] = []
    for label in range(labels.shape[0]):
        for j in np.flatnonzero(hits[:, label]):
            if int(j) not in matched:
                matched.append(int(j))
                break
    is_tp = np.zeros(proposals.shape[0], dtype=bool)
    is_tp[matched] = True
    return is_tp


def _ap_from_ranked(is_tp: np.ndarray, n_labels: int) -> float:
    acc_tp = np.cumsum(is_tp, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = acc_tp / np.arange(1, len(is_tp) + 1, dtype=np.float32)
        recall = acc_tp / np.float32(n_labels)
    x = np.concatenate([[np.float32(1)], recall[::-1]]).astype(np.float32)
    y = np.concatenate([[np.float32(0)], precision[::-1]]).astype(np.float32)
    y_max = np.maximum.accumulate(y)
    return float(np.sum(np.abs(np.diff(x)) * y_max[:-1], dtype=np.float32))


def _lookup(proposals: Mapping[str, Sequence[Sequence[float]]], file: str) -> np.ndarray:
    if file not in proposals:
        raise KeyError(f"no proposals for {file!r} (every labelled file needs an entry)")
    return _proposal_array(proposals[file], file)


def ap_1d(
    proposals: Mapping[str, Sequence[Sequence[float]]],
    labels: Labels,
    fps: float = 1.0,
    iou_thresholds: Sequence[float] = AP_IOU_THRESHOLDS,
) -> dict[float, float]:
    """``{t: AP@t}`` (see the module docstring). ``labels``: ``(file, segments)`` in metadata order."""
    per_file = [(_lookup(proposals, file), _label_array(segments)) for file, segments in labels]
    n_labels = sum(lab.shape[0] for _, lab in per_file)
    confidence = np.concatenate([p[:, 0] for p, _ in per_file]) if per_file else np.zeros(0, np.float32)
    if np.isnan(confidence).any():
        raise ValueError("a proposal has a NaN confidence (the SDK cannot rank it)")
    order = np.argsort(-confidence, kind="stable")
    out = {}
    for t in iou_thresholds:
        is_tp = np.concatenate([_match(p, lab, t, fps) for p, lab in per_file]) if per_file else np.zeros(0, bool)
        out[t] = _ap_from_ranked(is_tp[order], n_labels)
    return out


def _ar_counts(
    proposals: np.ndarray, labels: np.ndarray, n_list: Sequence[int], thresholds: Sequence[float], fps: float
) -> np.ndarray:
    """``(len(thresholds), len(n_list), 2)`` TP/FN counts of one file (steps 1-3 of AR)."""
    counts = np.zeros((len(thresholds), len(n_list), 2), dtype=np.int64)
    kept = proposals[: min(max(n_list), proposals.shape[0])]
    if kept.shape[0] == 0:
        return counts
    best = np.maximum.accumulate(_file_ious(kept, labels, fps), axis=0)  # (kept, N)
    n_labels = labels.shape[0]
    for i, t in enumerate(thresholds):
        for j, n in enumerate(n_list):
            tp = int(np.sum(best[min(n, kept.shape[0]) - 1] > np.float32(t)))
            counts[i, j] = (tp, n_labels - tp)
    return counts


def ar_1d(
    proposals: Mapping[str, Sequence[Sequence[float]]],
    labels: Labels,
    fps: float = 1.0,
    n_proposals: Sequence[int] = AR_N_PROPOSALS,
    iou_thresholds: Sequence[float] = AR_IOU_THRESHOLDS,
) -> dict[int, float]:
    """``{n: AR@n}`` (see the module docstring)."""
    total = np.zeros((len(iou_thresholds), len(n_proposals), 2), dtype=np.int64)
    for file, segments in labels:
        total += _ar_counts(_lookup(proposals, file), _label_array(segments), n_proposals, iou_thresholds, fps)
    tp, fn = total[..., 0].astype(np.float32), total[..., 1].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(tp + fn == 0, np.float32(0), tp / (tp + fn)).astype(np.float32)
    return {n: float(recall[:, j].mean(dtype=np.float32)) for j, n in enumerate(n_proposals)}


def ap_ar_1d(
    proposals: Mapping[str, Sequence[Sequence[float]]],
    labels: Labels,
    fps: float = 1.0,
    ap_iou_thresholds: Sequence[float] = AP_IOU_THRESHOLDS,
    ar_n_proposals: Sequence[int] = AR_N_PROPOSALS,
    ar_iou_thresholds: Sequence[float] = AR_IOU_THRESHOLDS,
) -> dict[str, dict[Any, float]]:
    """``{"ap": ap_1d(...), "ar": ar_1d(...)}``, the SDK's ``ap_ar_1d``."""
    return {
        "ap": ap_1d(proposals, labels, fps, ap_iou_thresholds),
        "ar": ar_1d(proposals, labels, fps, ar_n_proposals, ar_iou_thresholds),
    }


def challenge_score(results: Mapping[str, Mapping[Any, float]]) -> float:
    """``0.5 * mean(AP) + 0.5 * mean(AR)``, the score of ``examples/batfd/evaluate.py``."""
    ap, ar = list(results["ap"].values()), list(results["ar"].values())
    return 0.5 * sum(ap) / len(ap) + 0.5 * sum(ar) / len(ar)


def load_labels(metadata_path: str | os.PathLike, file_key: str = "file", value_key: str = "fake_segments") -> Labels:
    """``(file, segments)`` of a metadata JSON list, in file order (the SDK's ``load_json``)."""
    with open(metadata_path, encoding="utf-8") as f:
        entries = json.load(f)
    return [(entry[file_key], entry[value_key]) for entry in entries]


def load_proposals(path: str | os.PathLike) -> dict[str, list[list[float]]]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)

