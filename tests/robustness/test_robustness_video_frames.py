"""Frame-level video perturbations: each level changes frames in the intended direction and
amount (the DeeperForensics parameter table)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sf_fairseq.eval import perturb_video as pv

RNG = np.random.default_rng(0)
COLOUR = RNG.integers(0, 256, (72, 96, 3), dtype=np.uint8)


def test_parameter_table_matches_the_reference():
    table = {code: p.params for code, p in pv.VIDEO_PERTURBATIONS.items()}
    assert table == {
        "cs": (0.4, 0.3, 0.2, 0.1, 0.0),
        "cc": (0.85, 0.725, 0.6, 0.475, 0.35),
        "bw": (16, 32, 48, 64, 80),
        "gnc": (0.001, 0.002, 0.005, 0.01, 0.05),
        "gb": (7, 9, 13, 17, 21),
        "jpeg": (2, 3, 4, 5, 6),
        "vc": (30, 32, 35, 38, 40),
    }
    assert [pv.compression_crf("vc", lv) for lv in pv.LEVELS] == [30, 32, 35, 38, 40]
    assert pv.compression_crf("gb", 3) is None
    assert pv.frame_perturbation("vc", 3, RNG) is None
    with pytest.raises(ValueError, match="level"):
        pv.frame_perturbation("cs", 6, RNG)
    with pytest.raises(ValueError, match="unknown video perturbation"):
        pv.frame_perturbation("xx", 1, RNG)


def test_ycbcr_round_trip_and_studio_range():
    ycbcr = pv.bgr_to_ycbcr(COLOUR)
    assert np.abs(pv.ycbcr_to_bgr(ycbcr) - COLOUR).max() < 1e-2
    black, white = np.zeros((1, 1, 3), np.uint8), np.full((1, 1, 3), 255, np.uint8)
    np.testing.assert_allclose(pv.bgr_to_ycbcr(black)[0, 0], [16 / 255, 128 / 255, 128 / 255], atol=1e-6)
    np.testing.assert_allclose(pv.bgr_to_ycbcr(white)[0, 0], [235 / 255, 128 / 255, 128 / 255], atol=1e-6)


def test_saturation_scales_chroma_and_level_5_is_grey():
    chroma = pv.bgr_to_ycbcr(COLOUR)[..., 1:] - pv.NEUTRAL_CHROMA
    luma = pv.bgr_to_ycbcr(COLOUR)[..., 0]
    for level in pv.LEVELS:
        p = pv.VIDEO_PERTURBATIONS["cs"].param(level)
        out = pv.frame_perturbation("cs", level, RNG)(COLOUR)
        ycbcr = pv.bgr_to_ycbcr(out)
        # Chroma shrinks by p (up to uint8 rounding), luma is kept.
        np.testing.assert_allclose(ycbcr[..., 1:] - pv.NEUTRAL_CHROMA, p * chroma, atol=3 / 255)
        np.testing.assert_allclose(ycbcr[..., 0], luma, atol=2 / 255)
    grey = pv.color_saturation(COLOUR, 0.0).astype(int)
    assert np.abs(grey - grey[..., :1]).max() <= 1  # B = G = R up to rounding
    assert np.array_equal(pv.color_saturation(COLOUR, 1.0), COLOUR)


def test_contrast_multiplies_and_truncates():
    for level in pv.LEVELS:
        p = pv.VIDEO_PERTURBATIONS["cc"].param(level)
        out = pv.frame_perturbation("cc", level, RNG)(COLOUR)
        # float32 product, as the reference computes it, then truncation (not rounding)
        assert np.array_equal(out, np.floor(COLOUR.astype(np.float32) * np.float32(p)).astype(np.uint8))
    means = [pv.color_contrast(COLOUR, pv.VIDEO_PERTURBATIONS["cc"].param(lv)).mean() for lv in pv.LEVELS]
    assert means == sorted(means, reverse=True)


@pytest.mark.parametrize(
    "height, width, p, rule, expected",
    [
        (96, 96, 80, "reference", (0, 8)),  # a mouth ROI gets no blocks
        (255, 400, 16, "reference", (0, 8)),
        (256, 400, 16, "reference", (16, 8)),
        (480, 640, 48, "reference", (48, 8)),
        (720, 1280, 48, "reference", (96, 8)),
        (1080, 1920, 80, "reference", (320, 8)),
        (96, 96, 80, "scaled", (80, 3)),
        (256, 400, 16, "scaled", (16, 8)),
        (720, 1280, 48, "scaled", (48, 22)),
    ],
)
def test_block_count_and_size_rule(height, width, p, rule, expected):
    assert pv.block_layout(height, width, p, rule) == expected


def _components(mask: np.ndarray) -> list[tuple[int, int]]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    return [(int(stats[i, cv2.CC_STAT_HEIGHT]), int(stats[i, cv2.CC_STAT_WIDTH])) for i in range(1, n)]


def test_block_wise_pastes_grey_8x8_blocks():
    frame = np.zeros((1024, 1024, 3), np.uint8)
    out = pv.block_wise(frame, 16, np.random.default_rng(3))  # 4 * 16 = 64 blocks, sparse
    changed = (out != frame).any(axis=2)
    assert set(np.unique(out[changed])) == {pv.BLOCK_GREY}
    assert _components(changed) == [(8, 8)] * 64



def test_reference_rule_on_small_frames_pastes_nothing_and_warns_once(caplog):
    small = np.zeros((94, 90, 3), np.uint8)
    with caplog.at_level("WARNING", logger="sf_fairseq.eval.perturb_video"):
        for _ in range(2):
            assert np.array_equal(pv.frame_perturbation("bw", 5, RNG)(small), small)
    assert [r.getMessage() for r in caplog.records].count(
        "block-wise: a 90x94 frame gets no blocks under the reference rule (short side < 256 px); "
        "use block_rule='scaled' for a resolution-independent occlusion") == 1
    scaled = pv.frame_perturbation("bw", 5, RNG, "scaled")(small)
    assert set(np.unique(scaled)) == {0, pv.BLOCK_GREY}


def test_scaled_block_rule_covers_the_same_fraction_at_any_resolution():
    def covered(size: int, rule: str) -> float:
        frame = np.zeros((size, size, 3), np.uint8)
        fractions = [(pv.block_wise(frame, 16, np.random.default_rng(s), rule) != 0).any(axis=2).mean()
                     for s in range(5)]
        return float(np.mean(fractions))

    target = 16 * 64 / 256**2
    assert covered(256, "reference") == pytest.approx(target, rel=0.1)
    assert covered(768, "scaled") == pytest.approx(target, rel=0.1)
    assert covered(768, "reference") == pytest.approx(target / 3, rel=0.1)


def test_noise_has_the_level_variance_in_ycbcr_and_is_seeded():
    grey = np.full((256, 256, 3), 128, np.uint8)
    variances = []
    for level in pv.LEVELS:
        p = pv.VIDEO_PERTURBATIONS["gnc"].param(level)
        out = pv.frame_perturbation("gnc", level, np.random.default_rng(1))(grey)
        diff = pv.bgr_to_ycbcr(out) - pv.bgr_to_ycbcr(grey)
        variances.append(diff.reshape(-1, 3).var(axis=0))
        if level <= 4:  # level 5 clips at the range ends
            np.testing.assert_allclose(variances[-1], p, rtol=0.06)
    assert [v.mean() for v in variances] == sorted(v.mean() for v in variances)
    a = pv.gaussian_noise_color(COLOUR, 0.01, np.random.default_rng(7))
    b = pv.gaussian_noise_color(COLOUR, 0.01, np.random.default_rng(7))
    c = pv.gaussian_noise_color(COLOUR, 0.01, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_blur_kernel_size_and_sigma():
    for level in pv.LEVELS:
        k = pv.VIDEO_PERTURBATIONS["gb"].param(level)
        impulse = np.zeros((61, 61, 3), np.float32)
        impulse[30, 30] = 1.0
        out = pv.gaussian_blur(impulse, k)[..., 0]
        rows, cols = np.nonzero(out > 0)
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (k, k)
        profile = out[30] / out[30].sum()
        var = float((profile * (np.arange(61) - 30) ** 2).sum())
        assert np.sqrt(var) == pytest.approx(k / 6, rel=0.1)
    # Stronger levels remove more detail.
    detail = [np.abs(np.diff(pv.frame_perturbation("gb", lv, RNG)(COLOUR).astype(float), axis=1)).mean()
              for lv in pv.LEVELS]
    assert detail == sorted(detail, reverse=True)


@pytest.mark.parametrize("level", [2, 4])  # odd factors 3 and 5: one source pixel per block
def test_pixelation_keeps_one_sample_per_factor_block(level):
    p = pv.VIDEO_PERTURBATIONS["jpeg"].param(level)
    h, w = 15 * p, 20 * p
    frame = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = pv.frame_perturbation("jpeg", level, RNG)(frame)
    assert out.shape == frame.shape
    centres = np.zeros((h, w), bool)
    centres[p // 2 :: p, p // 2 :: p] = True
    other = frame.copy()
    other[~centres] = 255 - other[~centres]  # everything but the block centres changes
    assert np.array_equal(pv.pixelation(other, p), out)
    moved = frame.copy()
    moved[p // 2, p // 2] ^= 0xFF
    assert not np.array_equal(pv.pixelation(moved, p), out)


def test_pixelation_error_grows_with_level():
    smooth = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 2.0)
    smooth = cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX)
    errors = [np.mean((pv.frame_perturbation("jpeg", lv, RNG)(smooth).astype(float) - smooth) ** 2)
              for lv in pv.LEVELS]
    assert errors == sorted(errors) and errors[0] > 0
