"""Text encoder loading and the frame-sequence encoder."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mesm.data.batch import SequenceInput, TokenInput
from mesm.models.encoders import FrameEncoderOutput, TextEncoder, VisualEncoder


class MeanFrameEncoder(nn.Module):
    """Cheap stand-in CNN: a linear map of each frame's mean; counts its calls' frames."""

    def __init__(self, channels: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, out_features)
        self.frames_seen = 0

    def forward(
        self, frames: Tensor, frame_queries: Tensor | None = None, return_attention: bool = False
    ) -> FrameEncoderOutput:
        self.frames_seen += frames.shape[0]
        features = self.linear(frames.mean(dim=(2, 3)))
        flops = torch.ones(frames.shape[0], dtype=torch.float64)
        return FrameEncoderOutput(features, flops, frames.new_zeros(0), [])


def sequence(seed: int = 0) -> SequenceInput:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    values = torch.randn(2, 4, 2, 5, 5, generator=generator) * mask[..., None, None, None]
    return SequenceInput(values, mask)


def test_visual_encoder_runs_cnn_on_real_steps_only() -> None:
    torch.manual_seed(0)
    encoder = VisualEncoder(MeanFrameEncoder(2, 8), d_model=8, num_heads=2, dropout=0.0).eval()
    inputs = sequence()
    output = encoder(inputs)
    assert output.features.shape == (2, 8)
    assert encoder.frame_encoder.frames_seen == 4
    assert output.flops.tolist() == [3.0, 1.0]
    # Garbage in padded steps changes nothing: they are never computed nor attended.
    noisy = inputs.values + 100.0 * (~inputs.mask)[..., None, None, None]
    torch.testing.assert_close(encoder(SequenceInput(noisy, inputs.mask)).features, output.features)


def test_positional_encoding_switch() -> None:
    torch.manual_seed(0)
    with_positions = VisualEncoder(MeanFrameEncoder(2, 8), d_model=8, num_heads=2, dropout=0.0)
    without = VisualEncoder(
        MeanFrameEncoder(2, 8), d_model=8, num_heads=2, dropout=0.0, positional_encoding=False
    )
    without.load_state_dict(with_positions.state_dict())
    inputs = sequence()
    reversed_values = inputs.values.clone()
    reversed_values[0, :3] = inputs.values[0, :3].flip(0)
    shuffled = SequenceInput(reversed_values, inputs.mask)
    # Without positions the [CLS] output is invariant to the order of the frames.
    torch.testing.assert_close(without.eval()(shuffled).features, without(inputs).features)
    assert not torch.allclose(
        with_positions.eval()(shuffled).features[0], with_positions(inputs).features[0]
    )


def test_text_encoder_loads_local_folder(tiny_text_model: str) -> None:
    encoder = TextEncoder(tiny_text_model)
    assert encoder.hidden_size == 32
    tokens = TokenInput(torch.randint(1, 40, (3, 5)), torch.ones(3, 5, dtype=torch.long))
    features = encoder(tokens)
    assert features.shape == (3, 32)
    features.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())  # no unused pooler


def test_text_encoder_starts_in_training_mode(tiny_text_model: str) -> None:
    # from_pretrained returns eval mode and Lightning keeps modes as found: dropout would stay off.
    encoder = TextEncoder(tiny_text_model)
    assert encoder.model.training
    assert all(module.training for module in encoder.modules())


def test_text_encoder_freeze(tiny_text_model: str) -> None:
    encoder = TextEncoder(tiny_text_model, freeze=True).train()
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.model.training
    tokens = TokenInput(torch.randint(1, 40, (2, 5)), torch.ones(2, 5, dtype=torch.long))
    assert not encoder(tokens).requires_grad


def test_text_encoder_config_only_folder(tmp_path, tiny_text_model: str) -> None:
    from transformers import AutoConfig

    AutoConfig.from_pretrained(tiny_text_model).save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="no weights"):
        encoder = TextEncoder(str(tmp_path))
    assert encoder.hidden_size == 32
