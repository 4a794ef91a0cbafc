"""mesm.viz.sweep: the Figure-5 style PNG with every panel."""

from __future__ import annotations

from mesm.bench.flops_sweep import SweepResult, SweepRow, Timing
from mesm.viz.sweep import plot_sweep


def test_plot_sweep_with_timing_and_runs(tmp_path) -> None:
    timing = Timing.from_runs([10.0, 12.0])
    rows = [SweepRow("fe2e", None, 3e9, 1.0, device="cpu", backend="dense", train=timing)]
    rows += [
        SweepRow("mesm", p, 3e9 * p, p, device="cpu", backend="torch", train=timing)
        for p in (0.2, 0.6, 1.0)
    ]
    runs = [
        {"top_p": None, "value": 0.5, "metric": "f1", "split": "validation"},
        {"top_p": 0.6, "value": 0.45, "metric": "f1", "split": "validation"},
    ]
    result = SweepResult(rows, {"batch_size": 8}, runs)
    assert [row.top_p for row in result.flops_rows()] == [None, 0.2, 0.6, 1.0]
    path = plot_sweep(result, tmp_path / "sweep.png")
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[1] > 2.5 * image.shape[0]  # three panels side by side
