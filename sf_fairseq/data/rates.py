"""The clip rates every stage shares: 16 kHz mono audio, 25 fps mouth-ROI video.

They live here, apart from :mod:`sf_fairseq.data.clip_inputs` (which re-exports them and
needs torch), so that numpy-only stages (media decoding, perturbations, reports, voice
activity) can use them without importing torch. ``tests/test_rates_home.py`` fails when a
module declares them again.
"""

SAMPLE_RATE = 16000
"""Audio samples per second of every wav the models read."""
FPS = 25
"""Video frames per second of mouth-ROI videos, and the rate of stacked audio features."""
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
"""Audio samples per video frame (640)."""
