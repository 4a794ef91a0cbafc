"""FE2E and MESM end to end, parametrised over the registry."""

from __future__ import annotations

from itertools import combinations

import pytest
import torch

from mesm.data.batch import MODALITIES, SequenceInput
from mesm.models import ModelOutput, build_model, list_models, register_model

SUBSETS = [subset for size in (1, 2, 3) for subset in combinations(MODALITIES, size)]
CASES = [
    (name, subset)
    for name in list_models()
    for subset in SUBSETS
    if name != "mesm" or "text" in subset
]


@pytest.mark.parametrize(
    "name,modalities", CASES, ids=lambda v: v if isinstance(v, str) else "+".join(v)
)
def test_every_parameter_gets_a_gradient(
    name: str, modalities: tuple[str, ...], tiny_text_model: str, make_inputs
) -> None:
    torch.manual_seed(0)
    extra = {"attention": "weighted", "sparse_backend": "torch"} if name == "mesm" else {}
    model = build_model(
        name, num_classes=7, modalities=modalities, text_model=tiny_text_model, **extra
    )
    output = model(make_inputs(batch_size=2, vision_steps=2, audio_steps=2))
    assert isinstance(output, ModelOutput)
    assert output.logits.shape == (2, 7)
    assert set(output.modality_logits) == set(modalities)
    assert all(v.shape == (2, 7) for v in output.modality_logits.values())
    output.logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_mesm_requires_text(tiny_text_model: str) -> None:
    with pytest.raises(ValueError, match="MESM needs the text modality"):
        build_model("mesm", num_classes=2, modalities=("audio", "vision"))
    with pytest.raises(ValueError, match="subset"):
        build_model("fe2e", num_classes=2, modalities=("depth",))


def test_registry_rejects_duplicates_and_unknown_names() -> None:
    assert {"fe2e", "mesm"} <= set(list_models())
    with pytest.raises(ValueError, match="already registered"):
        register_model("fe2e")(lambda: None)
    with pytest.raises(KeyError, match="unknown model"):
        build_model("sparseconvnet")


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_mesm_at_p_one_equals_fe2e(train: bool, tiny_text_model: str, make_inputs) -> None:
    torch.manual_seed(0)
    common = {
        "num_classes": 3,
        "text_model": tiny_text_model,
        "dropout": 0.0,
        "freeze_text": True,  # the text model's dropout stays off in train mode
    }
    fe2e = build_model("fe2e", **common)
    mesm = build_model("mesm", top_p=1.0, attention="mask", sparse_backend="torch", **common)
    result = mesm.load_state_dict(fe2e.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(".attention." in k for k in result.missing_keys)
    fe2e.train(train)
    mesm.train(train)
    inputs = make_inputs(batch_size=2, vision_steps=2, audio_steps=2, seed=1)
    dense, sparse = fe2e(inputs), mesm(inputs)
    torch.testing.assert_close(sparse.logits, dense.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sparse.flops, dense.flops)
    assert all(torch.equal(k, torch.ones(3)) for k in sparse.kept_fraction.values())


def test_flops_count_real_frames_only(tiny_text_model: str, make_inputs) -> None:
    model = build_model("fe2e", num_classes=2, text_model=tiny_text_model)
    inputs = make_inputs(batch_size=2, vision_steps=3, audio_steps=2)
    with torch.no_grad():
        flops = model.eval()(inputs).flops
    face = model.encoders["vision"].frame_encoder.frame_flops
    chunk = model.encoders["audio"].frame_encoder.frame_flops
    assert flops.tolist() == [3 * face + 2 * chunk, face + chunk]


def test_return_attention_maps_frames_to_steps(tiny_text_model: str, make_inputs) -> None:
    torch.manual_seed(0)
    model = build_model(
        "mesm", num_classes=2, text_model=tiny_text_model, top_p=0.5, sparse_backend="torch"
    ).eval()
    inputs = make_inputs(batch_size=2, vision_steps=3, audio_steps=2)
    with torch.no_grad():
        output = model(inputs, return_attention=True)
    levels = output.attention["vision"]
    assert [level.spatial_size for level in levels] == [(24, 24), (12, 12), (6, 6)]
    vision = inputs["vision"]
    assert isinstance(vision, SequenceInput)
    first = levels[0]
    assert first.frame_to_step is not None
    assert first.frame_to_step.tolist() == vision.mask.nonzero().tolist()
    assert first.coords.shape[0] == 4 * 24 * 24  # 4 real frames, all sites scored
    fractions = [level.kept.float().mean() for level in levels]
    torch.testing.assert_close(torch.stack(fractions), output.kept_fraction["vision"])
    # Weights sum to one per frame; the sites scored at level 2 lie under level-1 kept sites.
    per_frame = torch.zeros(4).index_add(0, first.coords[:, 0], first.weights)
    torch.testing.assert_close(per_frame, torch.ones(4))
    kept = first.coords[first.kept]
    pooled = torch.stack([kept[:, 0], kept[:, 1] // 2, kept[:, 2] // 2], dim=1).unique(dim=0)
    assert torch.equal(pooled, levels[1].coords)
    assert model(inputs).attention == {}


def test_parameter_groups_cover_each_parameter_once(tiny_text_model: str) -> None:
    model = build_model(
        "fe2e", num_classes=2, modalities=("text", "audio"), text_model=tiny_text_model
    )
    groups = model.parameter_groups(lr=5e-5, text_lr_factor=10.0)
    ids = [id(p) for group in groups for p in group["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    text = {id(p) for p in model.encoders["text"].parameters()}
    by_name = {group["name"]: group for group in groups}
    assert by_name["text"]["lr"] == pytest.approx(5e-6)
    assert {id(p) for p in by_name["text"]["params"]} == text
    frozen = build_model(
        "fe2e", num_classes=2, modalities=("text",), text_model=tiny_text_model, freeze_text=True
    )
    assert [g["name"] for g in frozen.parameter_groups(1e-3, 10.0)] == ["main"]


def test_bad_input_type_is_named(tiny_text_model: str, make_inputs) -> None:
    model = build_model("fe2e", num_classes=2, modalities=("text",), text_model=tiny_text_model)
    inputs = make_inputs()
    with pytest.raises(KeyError, match="lack modalities"):
        model({"audio": inputs["audio"]})
    with pytest.raises(TypeError, match="'text' must be a TokenInput"):
        model({"text": inputs["audio"]})
