"""Train and evaluate FE2E / MESM (or any registered model).

    python experiments/run.py --top-p 0.5                       # MESM on the generated demo data
    python experiments/run.py --dataset iemocap --data data/iemocap --top-p 0.5 --seeds 0 1 2
    python experiments/run.py --eval-only --checkpoint runs/demo-mesm-p0.5/best.pt
    torchrun --nproc-per-node 4 experiments/run.py --data data/iemocap --top-p 0.5 --devices 4

Values resolve as: paper defaults < dataset preset < --config FILE.yaml < flags; the resolved
config is written to the run folder as config.yaml. Without --data the demo dataset is generated
(raw IEMOCAP layout), reorganised and trained on, all offline.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mesm.data.format import FormatError
from mesm.train.checkpoint import CheckpointError, CheckpointMismatchError
from mesm.train.experiment import (
    ConfigError,
    eval_only_config,
    load_config_file,
    resolve_config,
    run_experiment,
)
from mesm.train.module import NonFiniteLossError


def parse_args(argv: list[str] | None = None) -> tuple[str | None, dict[str, Any]]:
    """Returns the --config path and the options given explicitly (absent flags left out)."""
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add = parser.add_argument
    add("--config", help="YAML file of options (keys as the flags, dashes or underscores)")
    add("--dataset", choices=["iemocap", "mosei", "demo"], help="default: demo without --data")
    add("--data", help="processed folder from preprocessing/; for the demo, where it is generated")
    add("--model", help="registered model name (fe2e, mesm); default mesm with --top-p, else fe2e")
    add("--top-p", type=float, help="MESM nucleus mass in (0, 1] (selects mesm)")
    add("--modalities", help="letters of t(ext), a(udio), v(ision): tav, ta, tv, av, t, a, v")
    add("--attention", choices=["mask", "weighted"], help="MESM attention mode")
    add("--sparse-backend", choices=["auto", "torch", "spconv"], help="MESM sparse convolution")
    add("--text-model", help="Hugging Face name or path, or 'scratch' (default albert-base-v2)")
    add("--text-max-len", type=int, help="tokens per transcript, [CLS]/[SEP] included (50)")
    add("--img-interval", type=float, help="milliseconds between face frames (500)")
    add("--epochs", type=int, help="maximum epochs (40)")
    add("--batch-size", type=int, help="default 8 for FE2E, 2 for MESM (the paper's)")
    add("--lr", type=float, help="Adam learning rate (5e-5)")
    add("--text-lr-factor", type=float, help="text encoder lr = lr / factor (10)")
    add("--weight-decay", type=float, help="Adam weight decay (0)")
    add("--early-stop", type=int, help="epochs without a validation average-F1 gain (6)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="one seed (0)")
    seeds.add_argument("--seeds", type=int, nargs="+", help="several seeds: mean and std reported")
    add("--out", help="run folder (default runs/<dataset>-<model>[-p<top-p>])")
    add("--resume", action="store_true", help="continue an interrupted run in --out")
    add("--eval-only", action="store_true", help="evaluate --checkpoint, with its thresholds")
    add("--checkpoint", help="a best.pt or last.pt written by a run")
    add("--precision", help="32-true, bf16-mixed, 16-mixed")
    add("--devices", type=int, help="devices per node; > 1 trains data-parallel")
    add("--accelerator", choices=["auto", "cpu", "gpu"], help="default auto")
    add("--num-workers", type=int, help="data-loader processes (0)")
    add("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    values = {key: value for key, value in vars(parser.parse_args(argv)).items()}
    if "seed" in values:
        values["seeds"] = [values.pop("seed")]
    return values.pop("config", None), values


def main(argv: list[str] | None = None) -> int:
    config_path, flags = parse_args(argv)
    try:
        file_values = load_config_file(config_path) if config_path else {}
        config = resolve_config(file_values, flags)
        if config.eval_only:
            config = eval_only_config(config, {**file_values, **flags})
        run_experiment(config)
    except (ConfigError, CheckpointError, CheckpointMismatchError, FormatError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
