"""Helpers for the evidence tests: a scored-looking clip, and checks that HTML is self-contained."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from sf_fairseq.eval.pipeline import ClipResult
from sf_test_media import write_clip

FPS = 25.0
K = 15


def clip_result(n_frames: int = 100, best: int = 2, seed: int = 0, dip: tuple[int, int] = (50, 75)) -> ClipResult:
    """A :class:`ClipResult` whose similarities peak at offset ``best`` and dip in frames ``dip``."""
    rng = np.random.default_rng(seed)
    offsets = np.arange(-K, K + 1)
    sims = 0.3 - 0.01 * np.abs(offsets - best)[None, :] + 0.02 * rng.standard_normal((n_frames, 2 * K + 1))
    sims[dip[0]:dip[1]] -= 0.2
    curve = sims.mean(0)
    k = int(curve.argmax()) - K
    return ClipResult(score=float(curve.max()), best_offset=k, best_offset_ms=k * 40.0,
                      curve=curve.tolist(), n_frames=n_frames, sims=torch.from_numpy(sims).float())


def full_record(result: ClipResult) -> dict:
    """A record with every issue-15 field the pack shows."""
    return {
        "id": "clip", "track": "clip", **result.as_record(), "fps": FPS,
        "verdict": "fake", "reasons": ["offset_drift", "duration_capped"], "p_value": 0.004, "alpha": 0.01,
        "score_speech": result.score + 0.01, "speech_seconds": 3.2, "speech_fraction": 0.8,
        "curve_speech": [c + 0.01 for c in result.curve],
        "drift": {"drifting": True, "max_disagreement_frames": 8, "change_times_s": [2.0],
                  "segments": [], "windows": {"start_s": [0.0, 1.0, 2.0], "end_s": [2.0, 3.0, 4.0],
                                              "best_offset": [2, 2, 10], "prominence": [0.1, 0.1, 0.1],
                                              "confident": [True, False, True]}},
        "provenance": {"input_sha256": "ab" * 32, "checkpoint_sha256": "cd" * 32,
                       "code_version": {"version": "0.1.0", "git_commit": None},
                       "streams": {"video": {"fps": 25.0, "frames": 100}}, "note": "<script>alert(1)</script>"},
        "transcripts": {"lips": "bob made five pies", "audio": "a different sentence", "word_disagreement": 1.0,
                        "char_disagreement": 0.7, "model": "vsr.pt", "error_type": None, "error": None},
    }


@pytest.fixture
def roi_media(tmp_path: Path) -> tuple[Path, Path]:
    """A 96x96 4 s clip and its wav."""
    video, wav = tmp_path / "clip.mp4", tmp_path / "clip.wav"
    write_clip(video, wav, 100, np.random.default_rng(0))
    return video, wav


class PageParser(HTMLParser):
    """Collects what a self-contained page must not have: external references."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        for name in ("src", "href", "action"):
            value = (attrs.get(name) or "").strip().lower()
            if value.startswith(("http:", "https:", "//", "ftp:")):
                self.external.append(f"{tag} {name}={value}")
        if tag == "a":
            self.links.append(attrs.get("href") or "")

    def handle_data(self, data):
        self.text.append(data)


def check_self_contained(html: str) -> PageParser:
    """Parse ``html`` and assert it has no external asset and every image is an inline PNG."""
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert 'src="http' not in html and "url(http" not in html
    page = PageParser()
    page.feed(html)
    page.close()
    assert not page.external, page.external
    for src in page.images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return page
