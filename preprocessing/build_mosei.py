"""Reorganise the official CMU-MOSEI raw release into mesm's processed format.

    python preprocessing/build_mosei.py --raw CMU_MOSEI --out data/mosei --workers 4

On N machines (or a job array) sharing one output folder, then once all have finished:

    python preprocessing/build_mosei.py --raw CMU_MOSEI --out data/mosei \
        --num-shards N --shard-index I
    python preprocessing/build_mosei.py --out data/mosei --merge

Re-running over the same --out resumes: finished segments are skipped.
See datasets_reorg/README.md (cleaning criteria, label sources, splits).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesm.data.build import add_build_arguments, merge_shards
from mesm.data.format import FormatError
from mesm.data.mosei import DEFAULT_SPLIT_DIR, LABEL_SOURCES, build_mosei


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--raw", type=Path, help="the CMU_MOSEI folder (holding Raw/)")
    add_build_arguments(
        parser,
        default_split_dir=DEFAULT_SPLIT_DIR,
        resplit_help="draw a new 70/10/20 split of the videos",
        item="segments",
    )
    parser.add_argument(
        "--label-source",
        choices=LABEL_SOURCES,
        default="auto",
        help="csv: Raw/Labels/*.csv crowd batches; csd: CMU_MOSEI_Labels.csd; "
        "auto: csv when present (default)",
    )
    parser.add_argument("--csd", type=Path, help="the CMU_MOSEI_Labels.csd file if elsewhere")
    parser.add_argument(
        "--num-shards", type=int, default=1, help="split the videos into N shards (default 1)"
    )
    parser.add_argument(
        "--shard-index", type=int, default=0, help="the shard this run builds, 0 .. N-1"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="after all shards finished: check them and write the folder's one manifest",
    )
    args = parser.parse_args(argv)
    if not args.merge and args.raw is None:
        parser.error("--raw is required (except with --merge)")
    if args.num_shards < 1 or not 0 <= args.shard_index < args.num_shards:
        parser.error(f"--shard-index must be in 0 .. {args.num_shards - 1} and --num-shards >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        try:
            summary = merge_shards(args.out)
        except FormatError as error:
            print(f"cannot merge: {error}", file=sys.stderr)
            return 1
    else:
        summary = build_mosei(
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
            label_source=args.label_source,
            csd_path=args.csd,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
        )
    print(summary.format())
    if summary.shard is not None:
        print(f"shard finished; after all {summary.shard[1]} shards run --out {args.out} --merge")
    return summary.exit_code(args.strict)


if __name__ == "__main__":
    sys.exit(main())
