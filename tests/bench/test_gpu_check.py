"""experiments/gpu_check.py's pieces that run anywhere (the CUDA checks themselves need a GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mesm.bench.common import save_tiny_text_model
from mesm.bench.gpu_check import compare_backends, format_results, timings

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "gpu_check.py"


def _main():
    spec = importlib.util.spec_from_file_location("gpu_check_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_backend_comparison_shares_weights(tmp_path) -> None:
    text_model = save_tiny_text_model(str(tmp_path / "text"))
    result = compare_backends(text_model, torch.device("cpu"), backends=("torch", "torch"))
    assert result.status == "pass", result.details
    assert "max |logit difference| 0.00e+00" in result.details[0]
    skipped = compare_backends(text_model, torch.device("cpu"))  # spconv needs CUDA
    assert skipped.status == "skip"


def test_timings_report_ratios_to_fe2e() -> None:
    fake = {"fe2e": 2.0, "mesm": 1.0}

    def timer(model, text_model, batch_size, repeats, warmup, device, **kwargs):
        return [fake[model]] * repeats

    result = timings("unused", torch.device("cpu"), ["torch"], top_ps=(0.5,), timer=timer)
    assert "ratio to FE2E 1.00" in result.details[1]
    assert "MESM p=0.5 torch" in result.details[2] and "ratio to FE2E 0.50" in result.details[2]
    assert format_results([result]).startswith("[PASS] FE2E vs MESM")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of CPU-only hosts")
def test_without_cuda_the_script_says_so(capsys) -> None:
    assert _main()([]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: no CUDA device") and len(error.splitlines()) == 1
