"""Check the CUDA path on a GPU host: spconv == torch sparse backend (forward and gradients), a
short MESM training run in mixed precision with each backend, FE2E vs MESM step timings.

    python experiments/gpu_check.py                 # on a CUDA host; exit 1 if a check fails
    python experiments/gpu_check.py --device cpu --quick   # smoke test of the script on CPU

The same equivalence is tested by `pytest -m gpu` (skipped, with its reason, on CPU hosts).
"""

from __future__ import annotations

import argparse
import sys

import torch

from mesm.bench.gpu_check import format_results, run_checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny timing runs")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA device is visible (torch.cuda.is_available() is False); run on a GPU "
            "host, e.g. docker run --gpus all ... mesm:gpu gpu-check, or pass --device cpu",
            file=sys.stderr,
        )
        return 2
    results = run_checks(device, quick=args.quick)
    print(format_results(results))
    return 1 if any(result.status == "fail" for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
