"""``sf-paths``: print where the installed sf_fairseq keeps its fairseq user dir and YAML
configs (found by :mod:`sf_fairseq.paths`)."""

from __future__ import annotations

import argparse

from .paths import CONFIG_KINDS, config_dir, user_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sf-paths",
        description="Print where the installed sf_fairseq keeps its fairseq user dir and YAML configs, "
        "for fairseq-hydra-train's common.user_dir= and --config-dir.",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--user-dir", action="store_true", help="print the user dir only")
    what.add_argument("--config-dir", choices=CONFIG_KINDS, help="print this config dir only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.user_dir:
        print(user_dir())
    elif args.config_dir:
        print(config_dir(args.config_dir))
    else:
        print(f"user_dir\t{user_dir()}")
        for kind in CONFIG_KINDS:
            print(f"config_dir.{kind}\t{config_dir(kind)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
