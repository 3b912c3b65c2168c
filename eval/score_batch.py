"""Score many clips with a checkpoint, fairseq-generate style, streaming records to disk.

Input is either a manifest split (``DATA`` directory + ``--gen-subset``, see
:func:`.lists.read_manifest_split`) or a list file (``--list``: SpeechForensics
``test_list.txt`` or CSV, paths relative to ``--data-root``). Each clip is a mouth-ROI video and
its 16 kHz mono wav. Example::

    python -m sf_fairseq.eval.score_batch --path large_vox_iter5.pt \\
        --list FakeAVCeleb/test_list.txt --data-root /data/FakeAVCeleb_mouths \\
        --results-path out/favc --batch-size 16 --bf16 --report

The options build a :class:`.batch_engine.BatchJob`; the run is :func:`.batch_engine.run` (stages
call it through :func:`.batch_engine.score_list`).

Output, under ``--results-path``:

* ``scores.jsonl`` (``scores.<shard>-of-<n>.jsonl`` when sharded): one record per list item
  (:class:`sf_fairseq.records.ScoreRecord`), appended and flushed as soon as the item is scored or fails, in the
  order the clips are scored (shortest first), not list order. A missing or unreadable file
  gives a ``failed`` record with the error, and the run goes on.
* ``fingerprint.json`` (``fingerprint.<shard>-of-<n>.json``): everything that changes a record
  (checkpoint content hash, layer, max offset, max seconds, precision, input transform,
  transcription model and beam options, calibration, verdict thresholds, offset-drift and
  voice-activity settings, the reference set's content hash, and the input: list or manifest
  content hash, data root, category rule). A rerun with the same fingerprint skips items already scored
  successfully whose video and wav are unchanged (same size and modification time) and retries
  the others; a rerun with other settings is refused, naming the differing settings, unless
  ``--overwrite`` is given (that shard's old records are then discarded, never mixed).
* ``run.json``: the checkpoint, layer, input and score settings of the run (human-readable;
  only written once the settings are accepted).
* with ``--report`` (unsharded runs): ``report/`` as written by :mod:`.metrics_cli`.

One run at a time works on a shard's output (a lock beside it; a second run is refused with a
message naming the first); different shards of one directory run in parallel. Temporary files
left by killed runs are removed on the next run. Ctrl-C and SIGTERM stop the run cleanly (exit
status 130 and 143, every record written so far kept); the loader processes end with the run
even when it is killed with SIGKILL.

Clips are scored in batches of similar length (:class:`sf_fairseq.data.batching.BatchLimits`: at most
``--batch-size`` clips, ``--max-frames`` padded frames and ``--max-padding`` padding per model
call), the lengths read from the wav headers; the scores equal those of ``--batch-size 1``.

Every record carries the verdict of :mod:`.verdict` beside the paper's ``score`` (unchanged):
``verdict`` (``real``, ``fake`` or ``inconclusive``), ``reasons`` (codes), ``score_speech``
(the same offset search over speech frames only; Silero VAD runs in the loader processes),
``speech_seconds``, ``speech_fraction``, ``p_value`` (against ``--reference``, a real-only
reference set from ``sf-reference-set``; without one every verdict is ``inconclusive``, reason
``uncalibrated``), ``drift`` and ``provenance`` (input, scored files, checkpoint hashes, code
and library versions, every setting; ``sf-verify scores.jsonl --id ID`` re-scores from it).
Items of an ``sf-prepare`` output folder also get the checks its status records allow (source
resolution, truncation, face-track coverage, size and landmark jitter), and an item prepare
found no face or audio in is ``inconclusive`` with that reason. The thresholds are options
(``--alpha``, ``--min-speech-seconds``, ``--drift-*``, ``--vad-*``). ``--calibration`` only adds
``threshold_verdict``, the older fake-below-a-threshold call on the paper's score.

With ``--transcribe CKPT`` (a fine-tuned AVSR seq2seq checkpoint), every scored clip is also
decoded from its video stream alone and from its audio stream alone, a batch at a time, and its
record gets a ``transcripts`` field (lips, audio, their word/character disagreement, the model;
see :class:`sf_fairseq.records.Transcripts`). A clip that cannot be transcribed keeps its score and records the error
in that field; a rerun transcribes the clips whose records lack transcripts from this model.
The report then adds the mean word disagreement per category and its AUC as a detector.

A summary is printed at the end (errors and progress go to stderr); the exit status is 0 when
every item is scored, 1 otherwise. Memory stays bounded: clips are loaded one at a time by
``--num-workers`` loader processes and records go straight to disk.
"""

from __future__ import annotations

import argparse
import logging
from argparse import Namespace

from sf_fairseq._logging import TIMED_LOG_FORMAT, command_logging
from sf_fairseq.data.batching import BatchLimits

from . import lists
from .batch_engine import BatchJob, add_transcribe_arguments, run
from .jobs import error_text, run_interruptible
from .pipeline import add_scorer_arguments
from .scorer_settings import ScorerSettings
from .verdict import add_verdict_arguments, verdict_config_from_arguments

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sf_fairseq.eval.score_batch",
        description=(
            "Score mouth-ROI clips with SpeechForensics' lip-speech agreement score (higher = more "
            "likely real), writing one JSONL record per item as it goes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("data", nargs="?", help="manifest directory holding <gen-subset>.tsv (or use --list)")
    p.add_argument("--gen-subset", default="test", help="manifest split to score")
    p.add_argument("--list", help="SpeechForensics test_list.txt or CSV (path,label[,category][,audio])")
    p.add_argument("--data-root", help="root the --list paths are relative to (the mouth-ROI folder)")
    p.add_argument("--category-rule", default="auto", choices=sorted(lists.CATEGORY_RULES),
                   help="how to infer an item's category from its path when no column gives it")
    add_scorer_arguments(p)
    p.add_argument("--user-dir", help="fairseq user directory to import (only needed for extra plugins)")
    p.add_argument("--results-path", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="if --results-path holds scores of this shard made with other settings, discard them "
                   "(without it such a run is refused; with the same settings finished work is always reused)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per model call")
    p.add_argument("--max-frames", type=int, default=None,
                   help="cap on clips x longest stream (frames) per model call")
    p.add_argument("--max-padding", type=float, default=BatchLimits.max_padding,
                   help="cap on the padding per model call, as a fraction of its padded frames (clips are "
                   "batched shortest first, so only clips of similar length share a call)")
    p.add_argument("--num-workers", type=int, default=2, help="clip loading processes")
    p.add_argument("--num-shards", type=int, default=1, help="split the items into this many shards")
    p.add_argument("--shard-id", type=int, default=0, help="which shard this run scores")
    p.add_argument("--calibration", help="calibration JSON (sf-report --calibrate-fpr): adds threshold_verdict "
                   "(fake below its threshold on the paper's score) to records; the verdict itself comes from "
                   "--reference")
    add_transcribe_arguments(p)
    add_verdict_arguments(p)
    p.add_argument("--report", action="store_true", help="write a metrics report when done (unsharded runs)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for --report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def job_from_arguments(args: Namespace) -> BatchJob:
    """The run the parsed options describe.

    Raises:
        ValueError: the reference set cannot be read.
    """
    return BatchJob(
        list_path=args.list, results_path=args.results_path, scorer=ScorerSettings.from_arguments(args, args.path),
        data=args.data, gen_subset=args.gen_subset, data_root=args.data_root, category_rule=args.category_rule,
        user_dir=args.user_dir, overwrite=args.overwrite, batch_size=args.batch_size, max_frames=args.max_frames,
        max_padding=args.max_padding, num_workers=args.num_workers, num_shards=args.num_shards,
        shard_id=args.shard_id, calibration=args.calibration, transcribe=args.transcribe, beam=args.beam,
        lenpen=args.lenpen, verdict=verdict_config_from_arguments(args), report=args.report, n_boot=args.n_boot,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(TIMED_LOG_FORMAT):
        try:
            job = job_from_arguments(args)
        except (OSError, ValueError) as err:  # an unreadable reference set
            raise SystemExit(error_text(err)) from err
        return run_interruptible("sf-score-batch", run, job,
                                 f"the records written so far are kept in {args.results_path}: "
                                 "run the same command again to resume")


if __name__ == "__main__":
    raise SystemExit(main())
