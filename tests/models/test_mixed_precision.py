"""bf16 autocast through FE2E and MESM (torch sparse backend, incl. its hand-written backward).

Runs on CPU autocast here; the CUDA bf16/fp16 variants are in test_gpu_model.py.
"""

from __future__ import annotations

import pytest
import torch

from mesm.models import build_model


@pytest.mark.parametrize(
    "name,extra",
    [("fe2e", {}), ("mesm", {"top_p": 0.5, "sparse_backend": "torch", "attention": "weighted"})],
)
def test_bf16_autocast_matches_float32_and_gives_float32_gradients(
    tiny_text_model: str, make_inputs, name: str, extra: dict
) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=6, text_model=tiny_text_model, **extra).eval()
    inputs = make_inputs(batch_size=2, vision_steps=3, audio_steps=4)
    reference = model(inputs).logits.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(inputs).logits
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), reference, atol=0.1, rtol=0.05)
    logits.float().square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(g.dtype == torch.float32 for g in grads.values())
    assert all(torch.isfinite(g).all() for g in grads.values())
