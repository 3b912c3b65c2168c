"""``sf-perturb``: perturbed copies of a list of videos for one robustness cell (type x level).
Perturbations, checks, seeding and outputs are described in :mod:`.perturb_engine`, which does
the work (:func:`.perturb_engine.perturb_items`).
"""

from __future__ import annotations

import argparse

from sf_fairseq._logging import LOG_FORMAT, command_logging

from . import lists
from .perturb_audio import AUDIO_PERTURBATIONS
from .perturb_engine import LEVELS, TYPES, PerturbOptions, cell_name, perturb_items
from .perturb_video import BLOCK_RULES, VIDEO_PERTURBATIONS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sf_fairseq.eval.perturb",
        description=(
            "Write perturbed copies of a list of videos for one robustness cell (type x level): "
            "the DeeperForensics video perturbations or an audio perturbation. Audio and sync "
            "are kept; every copy is checked (frames, fps, audio length, sync). Reruns skip "
            "copies already written."
        ),
        epilog=(
            "Video types: " + ", ".join(f"{c} ({p.name}: {', '.join(map(str, p.params))})"
                                        for c, p in VIDEO_PERTURBATIONS.items())
            + ". Audio types: " + ", ".join(f"{c} ({p.name}, {p.unit}: {', '.join(map(str, p.params))})"
                                            for c, p in AUDIO_PERTURBATIONS.items())
            + ". Raw copies then go through: python -m sf_fairseq.preprocess.prepare "
            "OUT_DIR/videos.txt ROI_DIR --root OUT_DIR."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--list", required=True, help="SpeechForensics test_list.txt or CSV (path,label[,category][,audio])")
    p.add_argument("--data-root", help="root the list's paths are relative to")
    p.add_argument("--out-dir", required=True, help="output folder of this cell")
    p.add_argument("--type", required=True, choices=list(TYPES), help="perturbation type")
    p.add_argument("--level", required=True, type=int, choices=LEVELS, help="level (5 = strongest)")
    p.add_argument("--roi", action="store_true",
                   help="inputs are mouth-ROI videos with wavs beside them (fast option) instead of raw videos")
    p.add_argument("--seed", type=int, default=0,
                   help="base random seed (combined with the type, the level and the content of the perturbed "
                        "stream: inputs sharing that stream get the same perturbation)")
    p.add_argument("--block-rule", default="reference", choices=BLOCK_RULES,
                   help="block count rule of bw: the reference's (no blocks under 256 px) or resolution-independent")
    p.add_argument("--storage-crf", type=int, default=18, help="libx264 CRF of re-encoded frames (not vc)")
    p.add_argument("--preset", default="medium", help="libx264 preset")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--category-rule", default="auto", choices=sorted(lists.CATEGORY_RULES),
                   help="how to infer categories from paths (carried into list.csv)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        try:
            items = lists.read_list(args.list, args.data_root, args.category_rule)
        except (OSError, lists.ListFormatError) as err:
            raise SystemExit(f"error: {err}") from err
        options = PerturbOptions(args.seed, args.block_rule, args.storage_crf, args.preset)
        try:
            counts = perturb_items(items, args.data_root, args.out_dir, args.type, args.level, options,
                                   args.roi, args.workers, progress=not args.no_progress)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from err
        print(f"{cell_name(args.type, args.level)}: {len(items)} items, {counts['done']} already done, "
              f"{counts['written']} written, {counts['failed']} failed; output in {args.out_dir}")
        return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
