"""Median wall-clock time of one training step (forward + backward + Adam) of FE2E and MESM.

Run: ``uv run python -m mesm.bench.step_time [--batch-size 8] [--repeats 3] [--device cpu]``.
Timings use warm-up steps and report the median; FLOPs are counted elsewhere
(:mod:`mesm.bench.model_size`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch

from mesm.bench.common import save_tiny_text_model, synthetic_batch
from mesm.models import build_model


def time_training_step(
    name: str,
    text_model: str,
    batch_size: int,
    repeats: int,
    warmup: int,
    device: torch.device,
    **model_kwargs: object,
) -> list[float]:
    """Seconds of each timed training step of model ``name`` on one synthetic batch."""
    torch.manual_seed(0)
    model: Any = build_model(name, num_classes=6, text_model=text_model, **model_kwargs).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameter_groups(lr=5e-5, text_lr_factor=10.0))
    inputs = {key: value.to(device) for key, value in synthetic_batch(batch_size).items()}
    labels = torch.randint(0, 2, (batch_size, 6), device=device).float()
    times = []
    for step in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        output = model(inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, labels)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sparse-backend", default="torch")
    parser.add_argument("--text-model", default=None, help="hub name or folder; default: tiny BERT")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    with tempfile.TemporaryDirectory() as folder:
        text_model = args.text_model or save_tiny_text_model(folder)
        runs: list[tuple[str, str, dict[str, object]]] = [
            ("FE2E", "fe2e", {}),
            ("MESM p=0.5", "mesm", {"top_p": 0.5, "sparse_backend": args.sparse_backend}),
        ]
        for label, name, kwargs in runs:
            times = time_training_step(
                name, text_model, args.batch_size, args.repeats, args.warmup, device, **kwargs
            )
            print(
                f"{label:12s} batch {args.batch_size}: median {statistics.median(times):.2f} s "
                f"per step (runs: {', '.join(f'{t:.2f}' for t in times)})"
            )


if __name__ == "__main__":
    main()
