"""Draw what MESM's sparse attention keeps (the paper's Figures 3 and 4) for chosen utterances.

    python experiments/visualize.py --checkpoint runs/demo-mesm-p0.5/best.pt \
        --data demo_data/iemocap --ids Ses01F_impro01_F000 --out runs/demo-mesm-p0.5/attention

For each utterance id, writes <out>/<id>_vision.png (face frames) and <out>/<id>_audio.png (mel
chunks): the inputs, then per attention level the kept sites in red, the scored but dropped ones
darkened and the sites never scored black. The ids may come from any split of --data.
"""

from __future__ import annotations

import argparse
import sys

from mesm.data.format import FormatError
from mesm.train.checkpoint import CheckpointError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a MESM best.pt/last.pt or run folder")
    parser.add_argument("--data", required=True, help="the processed dataset folder")
    parser.add_argument("--ids", nargs="+", required=True, help="utterance ids")
    parser.add_argument("--out", default="runs/attention", help="folder for the PNG files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mesm.viz.attention_maps import attention_figures

    try:
        figures = attention_figures(args.checkpoint, args.data, args.ids, args.out)
    except (CheckpointError, FormatError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    for path in figures.paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
