"""Reorganise the official IEMOCAP release into mesm's processed format.

    python preprocessing/build_iemocap.py --raw IEMOCAP_full_release --out data/iemocap --workers 4

Re-running over the same --out resumes: finished utterances are skipped.
See datasets_reorg/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesm.data.build import add_build_arguments
from mesm.data.iemocap import DEFAULT_SPLIT_DIR, build_iemocap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--raw", type=Path, required=True, help="the IEMOCAP_full_release folder")
    add_build_arguments(
        parser,
        default_split_dir=DEFAULT_SPLIT_DIR,
        resplit_help="draw a new stratified 70/10/20 split",
        item="utterances",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = build_iemocap(
        args.raw,
        args.out,
        workers=args.workers,
        fps=args.fps,
        split_dir=args.split_dir,
        resplit_seed=args.resplit,
        limit=args.limit,
        log_mel=args.log_mel,
        device=args.device,
        progress=not args.no_progress,
    )
    print(summary.format())
    return summary.exit_code(args.strict)


if __name__ == "__main__":
    sys.exit(main())
