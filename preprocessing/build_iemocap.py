"""Reorganise the official IEMOCAP release into mesm's processed format.

    python preprocessing/build_iemocap.py --raw IEMOCAP_full_release --out data/iemocap --workers 4

Re-running over the same --out resumes: finished utterances are skipped.
See datasets_reorg/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesm.data.iemocap import DEFAULT_SPLIT_DIR, build_iemocap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--raw", type=Path, required=True, help="the IEMOCAP_full_release folder")
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (resumed if present)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--fps", type=float, default=2.0, help="face frames per second (default 2)")
    splits = parser.add_mutually_exclusive_group()
    splits.add_argument(
        "--split-dir",
        type=Path,
        default=DEFAULT_SPLIT_DIR,
        help="folder of train.txt/valid.txt/test.txt (default: the MESM paper's lists)",
    )
    splits.add_argument(
        "--resplit", type=int, metavar="SEED", help="draw a new stratified 70/10/20 split"
    )
    parser.add_argument("--limit", type=int, help="build only the first N utterances (trials)")
    parser.add_argument("--strict", action="store_true", help="exit non-zero if anything failed")
    parser.add_argument(
        "--log-mel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store log(mel + 1e-6) rather than power mel (default: log)",
    )
    parser.add_argument("--device", help="MTCNN device (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
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
