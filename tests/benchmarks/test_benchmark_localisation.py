"""AP@IoU and AR@N against values derived by hand from the official SDK's code
(ControlNet/AV-Deepfake1M @2c72275, src/loc_1d.rs). Each test writes its derivation."""

from __future__ import annotations

import json
import math

import pytest

from sf_fairseq.eval.benchmarks import localisation as loc


def test_ap_drops_the_first_recall_step():
    # One file, labels L0=[0,1], L1=[2,3]; proposals in file order p0 (IoU 1 with L0), p1 (IoU 1
    # with L1), p2 (IoU 0). Matching: L0 -> p0, L1 -> p1; is_tp = [T, T, F] (already by
    # confidence). acc_tp = [1, 2, 2], precision = [1, 1, 2/3], recall = [.5, 1, 1].
    # Curve: (1,0), (1,2/3), (1,1), (.5,1); y_max = [0, 2/3, 1, 1]; |dx| = [0, 0, .5].
    # AP = 0*0 + 0*2/3 + .5*1 = 0.5 (the step from recall 0 to .5 at rank 1 is never summed).
    proposals = {"a": [[0.9, 0, 1], [0.8, 2, 3], [0.7, 5, 6]]}
    labels = [("a", [[0, 1], [2, 3]])]
    assert loc.ap_1d(proposals, labels, iou_thresholds=[0.5]) == {0.5: pytest.approx(0.5)}


def test_ap_ties_keep_metadata_order():
    # f1: label [0,2], proposal conf .5 IoU 1 (TP); f2: no label, proposal conf .5 (FP).
    # Order f1, f2: ranked [T, F]: acc [1,1], prec [1,.5], rec [1,1]; curve (1,0),(1,.5),(1,1):
    # every |dx| is 0 -> AP 0. Order f2, f1: ranked [F, T]: acc [0,1], prec [0,.5], rec [0,1];
    # curve (1,0),(1,.5),(0,0): y_max [0,.5,.5], |dx| [0,1] -> AP .5.
    proposals = {"f1": [[0.5, 0, 2]], "f2": [[0.5, 0, 2]]}
    first = [("f1", [[0, 2]]), ("f2", [])]
    second = [("f2", []), ("f1", [[0, 2]])]
    assert loc.ap_1d(proposals, first, iou_thresholds=[0.5])[0.5] == pytest.approx(0.0)
    assert loc.ap_1d(proposals, second, iou_thresholds=[0.5])[0.5] == pytest.approx(0.5)


def test_ap_matches_in_file_order_not_by_confidence():
    # One label [0,1]; two proposals with IoU 1. The label takes the first in the file's order.
    # File order (p0 conf .2, p1 conf .9): p0 TP, p1 FP; ranked by confidence [F, T]:
    # acc [0,1], prec [0,.5], rec [0,1] -> curve (1,0),(1,.5),(0,0) -> AP .5.
    # File order (p1, p0): p1 TP; ranked [T, F]: acc [1,1], prec [1,.5], rec [1,1] -> AP 0.
    labels = [("a", [[0, 1]])]
    low_first = {"a": [[0.2, 0, 1], [0.9, 0, 1]]}
    high_first = {"a": [[0.9, 0, 1], [0.2, 0, 1]]}
    assert loc.ap_1d(low_first, labels, iou_thresholds=[0.5])[0.5] == pytest.approx(0.5)
    assert loc.ap_1d(high_first, labels, iou_thresholds=[0.5])[0.5] == pytest.approx(0.0)


def test_ap_iou_threshold_is_strict_and_fps_scales_times():
    # Label [0,2]; proposals p0 conf .95 at [5,6] (IoU 0), p1 conf .9 at [0,1] (IoU 1/2 = .5).
    # t = .4: p1 TP; ranked [F, T] -> AP .5 (as above). t = .5: .5 > .5 is false, nothing
    # matches: rec [0,0], curve (1,0),(0,0),(0,0), y_max all 0 -> AP 0.
    labels = [("a", [[0, 2]])]
    seconds = {"a": [[0.95, 5, 6], [0.9, 0, 1]]}
    frames = {"a": [[0.95, 125, 150], [0.9, 0, 25]]}  # the same at 25 fps
    assert loc.ap_1d(seconds, labels, iou_thresholds=[0.4, 0.5]) == {0.4: pytest.approx(0.5), 0.5: 0.0}
    assert loc.ap_1d(frames, labels, fps=25, iou_thresholds=[0.4, 0.5]) == {0.4: pytest.approx(0.5), 0.5: 0.0}


def test_ap_without_proposals_is_zero_and_without_labels_nan():
    # No proposal: the curve is (1,0) alone, an empty sum -> 0. No label: recall 0/0 -> NaN.
    assert loc.ap_1d({"a": []}, [("a", [[0, 1]])], iou_thresholds=[0.5])[0.5] == 0.0
    assert math.isnan(loc.ap_1d({"a": [[0.5, 0, 1]]}, [("a", [])], iou_thresholds=[0.5])[0.5])


def test_ar_reads_the_first_proposals_in_file_order():
    # Label [0,1]; proposals in file order p0 [5,6] (IoU 0), p1 [0,1] (IoU 1). Running best IoU
    # over the first n: n=1 -> 0 (not recalled), n=2 -> 1. AR@1 = 0, AR@2 = 1; n=5 is clamped to
    # the 2 proposals -> 1.
    proposals = {"a": [[0.9, 5, 6], [0.8, 0, 1]]}
    labels = [("a", [[0, 1]])]
    assert loc.ar_1d(proposals, labels, n_proposals=[5, 2, 1], iou_thresholds=[0.5]) == {5: 1.0, 2: 1.0, 1: 0.0}


def test_ar_skips_files_without_proposals():
    # f1: 1 label recalled (TP 1, FN 0). f2: 1 label, no proposal: the SDK leaves its counts at
    # 0 (neither TP nor FN). f3: no label, one proposal: TP 0, FN 0. Recall = 1 / (1 + 0) = 1.
    proposals = {"f1": [[0.9, 0, 1]], "f2": [], "f3": [[0.4, 0, 1]]}
    labels = [("f1", [[0, 1]]), ("f2", [[3, 4]]), ("f3", [])]
    assert loc.ar_1d(proposals, labels, n_proposals=[50], iou_thresholds=[0.5]) == {50: 1.0}


def test_ar_averages_recall_over_iou_thresholds():
    # IoU of [0, .8] with [0, 1] is .8 (float32 .8 exactly as the threshold .8): recalled at
    # .5, .55, .6, .65, .7, .75 (6 of the 10 thresholds; .8 > .8 is false) -> AR = .6.
    # A second file with one missed label (IoU 0) halves every recall -> AR = .3.
    one = {"a": [[0.9, 0, 0.8]]}
    assert loc.ar_1d(one, [("a", [[0, 1]])], n_proposals=[50])[50] == pytest.approx(0.6)
    two = {"a": [[0.9, 0, 0.8]], "b": [[0.9, 5, 6]]}
    assert loc.ar_1d(two, [("a", [[0, 1]]), ("b", [[0, 1]])], n_proposals=[50])[50] == pytest.approx(0.3)


def test_ar_is_zero_without_any_label():
    assert loc.ar_1d({"a": [[0.5, 0, 1]]}, [("a", [])], n_proposals=[10], iou_thresholds=[0.5]) == {10: 0.0}


def test_missing_file_is_an_error():
    with pytest.raises(KeyError, match="'b'"):
        loc.ap_ar_1d({"a": [[0.5, 0, 1]]}, [("a", [[0, 1]]), ("b", [[0, 1]])])


def test_ap_ar_from_files_with_lavdf_key(tmp_path):
    metadata = tmp_path / "metadata.json"
    metadata.write_text(json.dumps([{"file": "test/1.mp4", "fake_periods": [[0, 1], [2, 3]]}]))
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps({"test/1.mp4": [[0.9, 0, 1], [0.8, 2, 3], [0.7, 5, 6]]}))
    results = loc.ap_ar_1d(loc.load_proposals(predictions), loc.load_labels(metadata, value_key="fake_periods"),
                           ap_iou_thresholds=[0.5], ar_n_proposals=[1, 2])
    # AP as in test_ap_drops_the_first_recall_step; AR@1: only p0 -> L0 recalled, L1 not at any
    # threshold -> .5; AR@2: both recalled (IoU 1 > every threshold) -> 1.
    assert results == {"ap": {0.5: pytest.approx(0.5)}, "ar": {1: pytest.approx(0.5), 2: pytest.approx(1.0)}}
    assert loc.challenge_score(results) == pytest.approx(0.5 * 0.5 + 0.5 * 0.75)
