"""Feature-extraction FLOPs and wall time of FE2E and of MESM over top-p (the paper's Figure 5).

    python experiments/flops.py                                   # 9 faces + 12 chunks, batch 8
    python experiments/flops.py --top-p 0.5 --repeats 7           # the headline comparison only
    python experiments/flops.py --checkpoint runs/demo-mesm-p0.5 --data demo_data/iemocap
    python experiments/flops.py --no-timing --runs runs/iemocap-mesm-p0.1 runs/iemocap-mesm-p0.5

Writes <out>/flops.csv, <out>/flops.json and <out>/flops.png and prints a Markdown table. FLOPs
are the models' own analytic count per utterance (FLOPs = 2 x MACs); times are medians of
--repeats rounds after --warmup rounds, FE2E and every MESM top-p timed in turn within a round.
What is timed is feature extraction: the frame CNNs (see mesm/bench/flops_sweep.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from mesm.bench.common import AUDIO_CHUNKS, FACE_FRAMES, save_tiny_text_model
from mesm.bench.flops_sweep import (
    DEFAULT_TOP_PS,
    available_devices,
    build_sweep_models,
    format_table,
    read_run_metric,
    run_sweep,
    scratch_text_model,
    sweep_inputs,
    write_csv,
    write_json,
)
from mesm.data.format import FormatError
from mesm.train.checkpoint import CheckpointError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--top-p", type=float, nargs="+", default=list(DEFAULT_TOP_PS), help="MESM top-p values")
    add("--face-frames", type=int, default=FACE_FRAMES, help="faces per random utterance (9)")
    add("--audio-chunks", type=int, default=AUDIO_CHUNKS, help="mel chunks per random one (12)")
    add("--batch-size", type=int, default=8, help="utterances per timed batch (8)")
    add("--utterances", type=int, default=8, help="FLOPs averaged over max(this, batch size)")
    add("--repeats", type=int, default=5, help="timed rounds (5)")
    add("--warmup", type=int, default=1, help="discarded rounds before them (1)")
    add("--devices", nargs="+", default=None, help="cpu, cuda (default: all available)")
    add("--backends", nargs="+", default=None, help="torch, spconv (default: all available)")
    add("--no-timing", action="store_true", help="count FLOPs only")
    add("--checkpoint", help="a best.pt/last.pt or a run folder: trained weights and attention")
    add("--data", help="processed dataset: real utterances (and their lengths) instead of random")
    add("--split", default="valid", help="split of --data the utterances come from (valid)")
    add("--runs", nargs="+", default=[], help="run folders: their metric vs top-p in the figure")
    add("--metric", default="f1", help="average metric of the run folders (f1, accuracy, ...)")
    add("--metric-split", default="validation", choices=["validation", "test"])
    add("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add("--seed", type=int, default=0, help="initial weights and input sampling")
    add("--out", default="runs/flops", help="folder for flops.csv, flops.json, flops.png")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            text_model = None
            if args.checkpoint is None:
                if args.data is None:
                    text_model = save_tiny_text_model(scratch)
                else:
                    text_model = scratch_text_model(args.data, scratch)
            models = build_sweep_models(args.checkpoint, text_model, seed=args.seed)
            runs = [read_run_metric(run, args.metric, args.metric_split) for run in args.runs]
            batches, description = sweep_inputs(
                models,
                data=args.data,
                split=args.split,
                utterances=args.utterances,
                batch_size=args.batch_size,
                face_frames=args.face_frames,
                audio_chunks=args.audio_chunks,
                seed=args.seed,
            )
            result = run_sweep(
                models.fe2e,
                models.mesm,
                batches,
                None if args.no_timing else batches[0],
                top_ps=args.top_p,
                devices=args.devices or available_devices(),
                backends=args.backends,
                repeats=args.repeats,
                warmup=args.warmup,
                settings={
                    "batch_size": args.batch_size,
                    "weights": models.source,
                    "attention": models.attention,
                    "modalities": list(models.modalities),
                    "inputs": description,
                },
                say=lambda message: print(message, flush=True),
            )
        except (CheckpointError, FormatError, FileNotFoundError, KeyError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    result.runs = runs
    from mesm.viz.sweep import plot_sweep

    out = Path(args.out)
    files = [
        write_csv(result, out / "flops.csv"),
        write_json(result, out / "flops.json"),
        plot_sweep(result, out / "flops.png"),
    ]
    print(format_table(result))
    print("wrote " + ", ".join(str(path) for path in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
