"""Parameters and feature-extraction FLOPs per utterance of FE2E and MESM (untrained weights).

Run: ``uv run python -m mesm.bench.model_size``. FLOPs = 2 x MACs (see mesm.models.flops), for
one utterance of 9 face frames and 12 mel chunks, MESM at several top-p.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import torch
from torch import nn

from mesm.bench.common import AUDIO_CHUNKS, FACE_FRAMES, save_tiny_text_model, synthetic_batch
from mesm.models import build_model


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top-p", type=float, nargs="+", default=[0.1, 0.5, 0.7, 1.0])
    parser.add_argument("--utterances", type=int, default=4, help="averaged (random inputs)")
    args = parser.parse_args(argv)
    inputs = synthetic_batch(args.utterances)
    with tempfile.TemporaryDirectory() as folder:
        text_model = save_tiny_text_model(folder)
        print(f"one utterance = {FACE_FRAMES} face frames + {AUDIO_CHUNKS} mel chunks")
        for name in ("fe2e", "mesm"):
            torch.manual_seed(0)
            model: Any = build_model(name, num_classes=6, text_model=text_model).eval()
            text = count_parameters(model.encoders["text"])
            total = count_parameters(model)
            print(
                f"{name}: {total:,} parameters; without the text model {total - text:,} "
                f"(tiny BERT {text:,})"
            )
            for modality in ("vision", "audio"):
                print(f"  {modality} encoder: {count_parameters(model.encoders[modality]):,}")
        torch.manual_seed(0)
        fe2e: Any = build_model("fe2e", num_classes=6, text_model=text_model).eval()
        with torch.no_grad():
            dense = fe2e(inputs).flops.mean().item()
            faces = fe2e(
                {
                    "text": inputs["text"],
                    "vision": inputs["vision"],
                    "audio": synthetic_batch(args.utterances, audio_chunks=1)["audio"],
                }
            )
        face_only = faces.flops.mean().item() - fe2e.encoders["audio"].frame_encoder.frame_flops
        print(
            f"FE2E: {dense / 1e9:.2f} GFLOPs per utterance "
            f"(faces alone {face_only / 1e9:.2f}, paper 8.65)"
        )
        torch.manual_seed(0)
        mesm: Any = build_model(
            "mesm", num_classes=6, text_model=text_model, sparse_backend="torch"
        )
        mesm.eval()
        for top_p in args.top_p:
            for modality in ("vision", "audio"):
                mesm.encoders[modality].frame_encoder.top_p = top_p
            with torch.no_grad():
                output = mesm(inputs)
            flops = output.flops.mean().item()
            kept = {k: [round(f, 3) for f in v.tolist()] for k, v in output.kept_fraction.items()}
            print(
                f"MESM p={top_p}: {flops / 1e9:.2f} GFLOPs per utterance "
                f"({flops / dense:.2f} of FE2E); kept per level {kept}"
            )


if __name__ == "__main__":
    main()
