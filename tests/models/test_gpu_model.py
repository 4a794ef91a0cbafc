"""The whole MESM model on CUDA: spconv == torch backend, mixed precision (GPU hosts only)."""

from __future__ import annotations

import pytest
import torch

from mesm.bench.common import save_tiny_text_model, synthetic_batch
from mesm.bench.gpu_check import compare_backends
from mesm.models import build_model
from mesm.models.sparse import spconv_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def bench_text_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The benchmarks' tiny BERT (64 positions: synthetic_batch has 50 tokens)."""
    return save_tiny_text_model(str(tmp_path_factory.mktemp("bench_text")))


needs_spconv = pytest.mark.skipif(
    not spconv_available(), reason="needs spconv 2.x (the `cuda` extra, spconv-cu120)"
)


@needs_spconv
@pytest.mark.parametrize("top_p", [0.5, 1.0])
def test_mesm_spconv_equals_torch_backend(bench_text_model: str, top_p: float) -> None:
    result = compare_backends(bench_text_model, torch.device("cuda"), top_p=top_p)
    assert result.status == "pass", "\n".join(result.details)


@pytest.mark.parametrize(
    "name,backend",
    [("fe2e", None), ("mesm", "torch"), pytest.param("mesm", "spconv", marks=needs_spconv)],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_step_is_finite(
    bench_text_model: str, name: str, backend: str | None, dtype: torch.dtype
) -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    extra = {} if backend is None else {"top_p": 0.5, "sparse_backend": backend}
    model = build_model(name, num_classes=6, text_model=bench_text_model, **extra).to(device)
    inputs = {k: v.to(device) for k, v in synthetic_batch(2, 3, 4).items()}
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    with torch.autocast("cuda", dtype=dtype):
        logits = model(inputs).logits
    assert torch.isfinite(logits).all()
    scaler.scale(logits.float().square().mean()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
