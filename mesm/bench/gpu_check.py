"""Checks of the CUDA path: spconv vs torch sparse backend, mixed precision, FE2E vs MESM timings.

Run on a GPU host with ``python experiments/gpu_check.py`` (or ``docker run --gpus all ... mesm:gpu
gpu-check``). Each check returns a :class:`CheckResult`; the script prints them and exits non-zero
when one fails.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mesm.bench.common import save_tiny_text_model, synthetic_batch
from mesm.bench.step_time import time_training_step
from mesm.models import build_model
from mesm.models.sparse import spconv_available

NUM_CLASSES = 6


@dataclass
class CheckResult:
    """Outcome of one check: ``status`` is "pass", "fail" or "skip"; ``details`` are printable."""

    name: str
    status: str
    details: list[str] = field(default_factory=list)


def device_report(device: torch.device) -> list[str]:
    """Versions and the device name."""
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"CUDA runtime {torch.version.cuda}"
    ]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        lines.append(f"device: {props.name}, {props.total_memory / 2**30:.1f} GiB")
    else:
        lines.append(f"device: {device} ({torch.get_num_threads()} threads)")
    try:
        import spconv

        lines.append(f"spconv {getattr(spconv, '__version__', '?')}")
    except ImportError:
        lines.append("spconv: not installed (install the `cuda` extra: uv sync --extra cuda)")
    return lines


def _mesm(text_model: str, backend: str, top_p: float, device: torch.device) -> Any:
    torch.manual_seed(0)
    model = build_model(
        "mesm",
        num_classes=NUM_CLASSES,
        text_model=text_model,
        top_p=top_p,
        attention="weighted",  # so the attention layers' gradients are compared too
        sparse_backend=backend,
    )
    return model.to(device)


def compare_backends(
    text_model: str,
    device: torch.device,
    backends: tuple[str, str] = ("torch", "spconv"),
    top_p: float = 0.5,
    batch_size: int = 2,
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> CheckResult:
    """MESM with the same weights on two sparse backends: logits and every gradient must agree.

    Both run in eval mode (no dropout, batch norm with its running statistics), so they compute
    the same function and any difference is the backend's.
    """
    name = f"MESM p={top_p}: {backends[1]} backend == {backends[0]} backend (forward, gradients)"
    if "spconv" in backends and (device.type != "cuda" or not spconv_available()):
        return CheckResult(name, "skip", ["needs a CUDA device and spconv 2.x"])
    inputs = {k: v.to(device) for k, v in synthetic_batch(batch_size, 3, 4).items()}
    reference = _mesm(text_model, backends[0], top_p, device)
    other = _mesm(text_model, backends[1], top_p, device)
    other.load_state_dict(reference.state_dict())  # one weight layout for both backends
    results = []
    for model in (reference, other):
        model.eval()
        output = model(inputs)
        output.logits.square().sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((output.logits.detach(), output.kept_fraction, grads))
    (logits_a, kept_a, grads_a), (logits_b, kept_b, grads_b) = results
    logit_diff = float((logits_a - logits_b).abs().max())
    worst_name, worst = "", 0.0
    passed = torch.allclose(logits_a, logits_b, atol=atol, rtol=rtol)
    passed &= set(grads_a) == set(grads_b)
    for key in sorted(set(grads_a) & set(grads_b)):
        scale = float(grads_a[key].abs().max()) + 1e-12
        diff = float((grads_a[key] - grads_b[key]).abs().max()) / scale
        if diff > worst:
            worst_name, worst = key, diff
    passed &= worst <= 1e-2
    kept = ", ".join(
        f"{k} {float(v.mean()):.3f}/{float(kept_b[k].mean()):.3f}" for k, v in kept_a.items()
    )
    return CheckResult(
        name,
        "pass" if passed else "fail",
        [
            f"max |logit difference| {logit_diff:.2e} (tolerance {atol} + {rtol} relative)",
            f"worst gradient difference / gradient scale {worst:.2e} ({worst_name or 'none'}), "
            "tolerance 1e-2",
            f"kept fraction per modality ({backends[0]}/{backends[1]}): {kept}",
        ],
    )


def mixed_precision_training(
    device: torch.device, precision: str, backend: str, out: Path
) -> CheckResult:
    """A short MESM training run through experiments' pipeline in ``precision`` on ``device``."""
    from mesm.train.experiment import resolve_config, run_experiment

    name = f"short MESM training run, {precision}, {backend} backend"
    if backend == "spconv" and (device.type != "cuda" or not spconv_available()):
        return CheckResult(name, "skip", ["needs a CUDA device and spconv 2.x"])
    config = resolve_config(
        flag_values={
            "dataset": "demo",
            "data": str(out / "demo_data"),
            "out": str(out / f"run-{precision}-{backend}"),
            "top_p": 0.5,
            "sparse_backend": backend,
            "precision": precision,
            "accelerator": "gpu" if device.type == "cuda" else "cpu",
            "epochs": 2,
            "progress": False,
            "demo_sessions": 1,
            "demo_dialogs_per_session": 2,
            "demo_utterances_per_dialog": 16,
        }
    )
    result = run_experiment(config, say=lambda message: None)[0]
    test = result.metrics["test"]["average"]
    rate = result.metrics["timing"]["train"]["samples_per_second"]
    finite = all(value is None or value == value for value in test.values())  # NaN != NaN
    return CheckResult(
        name,
        "pass" if finite else "fail",
        [f"test average F1 {100 * test['f1']:.1f}, {rate:.1f} training samples/s"],
    )


def timings(
    text_model: str,
    device: torch.device,
    backends: list[str],
    batch_size: int = 8,
    repeats: int = 5,
    top_ps: tuple[float, ...] = (0.5, 0.7),
    timer: Callable[..., list[float]] = time_training_step,
) -> CheckResult:
    """Median training-step time (forward + backward + Adam) of FE2E and MESM per backend."""
    rows: list[tuple[str, str, dict[str, Any]]] = [("FE2E", "fe2e", {})]
    rows += [
        (f"MESM p={p} {backend}", "mesm", {"top_p": p, "sparse_backend": backend})
        for backend in backends
        for p in top_ps
    ]
    lines = [f"batch {batch_size}, default shape, median of {repeats} after 1 warm-up"]
    fe2e_time = None
    for label, model, kwargs in rows:
        times = timer(model, text_model, batch_size, repeats, 1, device, **kwargs)
        median = statistics.median(times)
        fe2e_time = fe2e_time or median
        lines.append(
            f"{label:24s} {1000 * median:9.1f} ms   ratio to FE2E {median / fe2e_time:.2f}"
        )
    return CheckResult("FE2E vs MESM training-step time", "pass", lines)


def run_checks(device: torch.device, quick: bool = False) -> list[CheckResult]:
    """Every check on ``device``; ``quick`` shrinks the timing runs (for a CPU smoke test)."""
    backends = ["torch", "spconv"] if device.type == "cuda" and spconv_available() else ["torch"]
    precision = (
        "bf16-mixed"
        if device.type == "cuda" and torch.cuda.is_bf16_supported()
        else ("16-mixed" if device.type == "cuda" else "32-true")
    )
    results = [CheckResult("environment", "pass", device_report(device))]
    with tempfile.TemporaryDirectory() as folder:
        text_model = save_tiny_text_model(str(Path(folder) / "text"))
        results.append(compare_backends(text_model, device))
        for backend in ("torch", "spconv"):
            results.append(mixed_precision_training(device, precision, backend, Path(folder)))
        results.append(
            timings(
                text_model,
                device,
                backends,
                batch_size=2 if quick else 8,
                repeats=1 if quick else 5,
            )
        )
    return results


def format_results(results: list[CheckResult]) -> str:
    lines = []
    for result in results:
        lines.append(f"[{result.status.upper():4s}] {result.name}")
        lines.extend(f"       {detail}" for detail in result.details)
    return "\n".join(lines)


__all__ = [
    "CheckResult",
    "compare_backends",
    "device_report",
    "format_results",
    "mixed_precision_training",
    "run_checks",
    "timings",
]
