"""mesm.bench.flops_sweep: timing statistics, FLOPs against hand counts, run-folder metrics."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from mesm.bench.flops_sweep import (
    SweepResult,
    SweepRow,
    Timing,
    count_flops,
    format_table,
    iter_batches,
    read_run_metric,
    set_top_p,
)
from mesm.data.batch import SequenceInput
from mesm.models.encoders import DenseFrameCNN, VisualEncoder
from mesm.models.flops import conv2d_flops


class _VisionOnly(torch.nn.Module):
    """The smallest model with the FE2E interface: one dense vision encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.encoders = torch.nn.ModuleDict(
            {"vision": VisualEncoder(DenseFrameCNN(3, (48, 48), 8), d_model=8, num_layers=1)}
        )

    def forward(self, inputs):
        encoded = self.encoders["vision"](inputs["vision"])
        return type("Output", (), {"flops": encoded.flops, "kept_fraction": {}})()


def test_timing_statistics() -> None:
    timing = Timing.from_runs([30.0, 10.0, 20.0, 50.0])
    assert (timing.median_ms, timing.min_ms, timing.max_ms) == (25.0, 10.0, 50.0)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        Timing.from_runs([])


def test_dense_flops_per_utterance_are_frames_times_the_hand_count() -> None:
    mask = torch.tensor([[True, True, True], [True, False, False]])  # 3 and 1 real frames
    inputs = {"vision": SequenceInput(torch.randn(2, 3, 3, 48, 48), mask)}
    model = _VisionOnly()
    flops, per_modality, kept = count_flops(model, list(iter_batches(inputs, batch_size=1)))
    # The stem alone, by hand: 48*48 outputs x 5*5 taps x 3 x 64 MACs x 2.
    assert conv2d_flops(3, 64, (5, 5), (48, 48)) == 2 * 48 * 48 * 25 * 3 * 64
    frame = model.encoders["vision"].frame_encoder.frame_flops
    assert flops == pytest.approx(frame * (3 + 1) / 2)
    assert per_modality == {"vision": pytest.approx(frame * 2)}
    assert kept == {}


def test_set_top_p_needs_a_mesm_model() -> None:
    with pytest.raises(ValueError, match="no MESM frame CNN"):
        set_top_p(_VisionOnly(), 0.5)


def test_iter_batches_splits_every_input() -> None:
    inputs = {"vision": SequenceInput(torch.zeros(5, 2, 3, 4, 4), torch.ones(5, 2, dtype=bool))}
    sizes = [batch["vision"].values.shape[0] for batch in iter_batches(inputs, 2)]
    assert sizes == [2, 2, 1]


def test_read_run_metric(tmp_path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": "mesm", "top_p": 0.4}))
    metrics = {"validation": {"average": {"f1": 0.61, "accuracy": 0.8}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    run = read_run_metric(tmp_path, "accuracy")
    assert (run["model"], run["top_p"], run["value"]) == ("mesm", 0.4, 0.8)
    with pytest.raises(KeyError, match="no 'test' entry"):
        read_run_metric(tmp_path, "f1", "test")
    with pytest.raises(FileNotFoundError, match="finished run folder"):
        read_run_metric(tmp_path / "missing")


def test_format_table_lists_flops_ratio_and_medians() -> None:
    timing = Timing.from_runs([100.0, 300.0, 200.0])
    rows = [
        SweepRow("fe2e", None, 2e9, 1.0, device="cpu", backend="dense", train=timing),
        SweepRow("mesm", 0.5, 1e9, 0.5, device="cpu", backend="torch", train=timing),
    ]
    rows[1].train_time_ratio = 0.5
    table = format_table(SweepResult(rows, {}))
    assert "| MESM p=0.5 | cpu | torch | 1.00 | 0.50 | - | 200 (100-300) | 0.50 |" in table
