"""Write a miniature raw IEMOCAP tree (official layout), labels learnable from each modality.

python preprocessing/make_demo_iemocap.py --out demo_data/IEMOCAP_demo
python preprocessing/build_iemocap.py --raw demo_data/IEMOCAP_demo \
    --out demo_data/iemocap --resplit 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesm.data.synthetic import make_iemocap_tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the raw tree into")
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--dialogs-per-session", type=int, default=4)
    parser.add_argument("--utterances-per-dialog", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inject-bad", action="store_true", help="add one of each bad input")
    args = parser.parse_args(argv)
    tree = make_iemocap_tree(
        args.out,
        sessions=args.sessions,
        dialogs_per_session=args.dialogs_per_session,
        utterances_per_dialog=args.utterances_per_dialog,
        seed=args.seed,
        inject_bad=args.inject_bad,
    )
    print(
        f"wrote {len(tree.dialogs)} dialogs, {len(tree.utterances)} utterances "
        f"({len(tree.expected_ok())} in the six classes) to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
