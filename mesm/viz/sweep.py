"""The top-p sweep figure in the style of the paper's Figure 5.

Panels: feature-extraction GFLOPs per utterance vs top-p (FE2E as a dashed line); when timed,
forward+backward time vs top-p per device and backend (median, interquartile range: one
slow run of a shared machine should not hide the trend); when run folders are given, their
metric vs top-p (an FE2E run as a dashed line).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from mesm.bench.flops_sweep import MESM, SweepResult
from mesm.viz.common import pyplot


def _quartiles(runs: list[float]) -> tuple[float, float]:
    """First and third quartile of the timed runs (a single run is both)."""
    if len(runs) < 2:
        return runs[0], runs[0]
    quartiles = statistics.quantiles(runs, n=4, method="inclusive")
    return quartiles[0], quartiles[2]


def plot_sweep(result: SweepResult, path: str | os.PathLike[str]) -> Path:
    """Write the sweep figure as a PNG and return its path."""
    plt = pyplot()
    flops_rows = result.flops_rows()
    timed = [row for row in result.rows if row.train is not None]
    panels = 1 + bool(timed) + bool(result.runs)
    figure, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8), squeeze=False)
    axes = list(axes[0])

    flops_axis = axes.pop(0)
    mesm = [row for row in flops_rows if row.model == MESM]
    dense = [row for row in flops_rows if row.model != MESM]
    flops_axis.plot(
        [row.top_p for row in mesm], [row.flops / 1e9 for row in mesm], marker="o", label="MESM"
    )
    for row in dense:
        flops_axis.axhline(row.flops / 1e9, linestyle="--", color="grey", label="FE2E")
    flops_axis.set_xlabel("top-p")
    flops_axis.set_ylabel("GFLOPs per utterance (feature extraction)")
    flops_axis.set_ylim(bottom=0)
    flops_axis.legend()
    flops_axis.set_title("FLOPs")

    if timed:
        time_axis = axes.pop(0)
        groups = sorted({(row.device, row.backend) for row in timed if row.model == MESM})
        for device, backend in groups:
            rows = [r for r in timed if (r.device, r.backend) == (device, backend)]
            trains = [r.train for r in rows if r.train is not None]
            low, high = zip(*(_quartiles(t.runs_ms) for t in trains), strict=True)
            medians = [t.median_ms for t in trains]
            time_axis.errorbar(
                [r.top_p for r in rows],
                medians,
                yerr=[
                    [m - q for m, q in zip(medians, low, strict=True)],
                    [q - m for m, q in zip(medians, high, strict=True)],
                ],
                marker="o",
                capsize=3,
                label=f"MESM {device} {backend}",
            )
        for row in timed:
            if row.model != MESM:
                time_axis.axhline(
                    row.train.median_ms if row.train is not None else 0.0,
                    linestyle="--",
                    color="grey",
                    label=f"FE2E {row.device}",
                )
        batch = result.settings.get("batch_size", "?")
        time_axis.set_xlabel("top-p")
        time_axis.set_ylabel(f"fwd+bwd ms per batch of {batch} (median, IQR)")
        time_axis.set_ylim(bottom=0)
        time_axis.legend()
        time_axis.set_title("measured time")

    if result.runs:
        metric_axis = axes.pop(0)
        runs = sorted(
            (run for run in result.runs if run["top_p"] is not None), key=lambda r: r["top_p"]
        )
        name = f"{result.runs[0]['split']} {result.runs[0]['metric']}"
        if runs:
            metric_axis.plot(
                [run["top_p"] for run in runs],
                [run["value"] for run in runs],
                marker="o",
                label="MESM",
            )
        for run in result.runs:
            if run["top_p"] is None:
                metric_axis.axhline(run["value"], linestyle="--", color="grey", label="FE2E")
        metric_axis.set_xlabel("top-p")
        metric_axis.set_ylabel(f"average {name}")
        metric_axis.legend()
        metric_axis.set_title("metric of the run folders")

    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


__all__ = ["plot_sweep"]
