"""Does the attention learn? "mask" vs "weighted" MESM attention on a small synthetic task.

Each frame (1x32x32 noise) holds two 6x6 patches of random sign, one in the left and one in the
right half; the query (standing in for the text [CLS]) says which half matters, and the label is
the sign of that half's patch. With top-p = 0.3 the nucleus drops most sites, so the model
can only solve the task if the attention learns to keep the queried patch.

Run: ``uv run python -m mesm.bench.attention_modes [--steps 150] [--seeds 0 1]``.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F  # noqa: N812

from mesm.models.encoders import SparseFrameCNN

SIZE = 32
PATCH = 6
QUERY_DIM = 8


def make_task(count: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """frames (F, 1, 32, 32), queries (F, 8), labels (F,), relevant-patch masks (F, 32, 32)."""
    frames = 0.3 * torch.randn(count, 1, SIZE, SIZE, generator=generator)
    signs = torch.randint(0, 2, (count, 2), generator=generator).float() * 2 - 1
    rows = torch.randint(0, SIZE - PATCH, (count, 2), generator=generator)
    cols = torch.randint(0, SIZE // 2 - PATCH, (count, 2), generator=generator)
    cols[:, 1] += SIZE // 2
    ys = torch.arange(SIZE)[None, :, None]
    xs = torch.arange(SIZE)[None, None, :]
    patches = [
        (ys >= rows[:, h, None, None])
        & (ys < rows[:, h, None, None] + PATCH)
        & (xs >= cols[:, h, None, None])
        & (xs < cols[:, h, None, None] + PATCH)
        for h in range(2)
    ]  # 2 x (F, 32, 32)
    for half in range(2):
        frames[:, 0] += patches[half] * signs[:, half, None, None]
    which = torch.randint(0, 2, (count,), generator=generator)
    queries = F.one_hot(which, QUERY_DIM).float()
    labels = (signs[torch.arange(count), which] > 0).long()
    relevant = torch.where(which[:, None, None] == 0, patches[0], patches[1])
    return frames, queries, labels, relevant


def run(mode: str, seed: int, steps: int, top_p: float, batch_size: int) -> dict[str, float]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = SparseFrameCNN(1, (SIZE, SIZE), 2, QUERY_DIM, top_p, mode, sparse_backend="torch")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    attention_params = list(model.attention.parameters())
    losses, attention_grad = [], 0.0
    for _ in range(steps):
        frames, queries, labels, _ = make_task(batch_size, generator)
        loss = F.cross_entropy(model(frames, queries).features, labels)
        optimizer.zero_grad()
        loss.backward()
        attention_grad += sum(float(p.grad.norm()) for p in attention_params if p.grad is not None)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    test_generator = torch.Generator().manual_seed(1000 + seed)
    frames, queries, labels, relevant = make_task(256, test_generator)
    with torch.no_grad():
        output = model(frames, queries, return_attention=True)
    accuracy = (output.features.argmax(1) == labels).float().mean().item()
    first = output.attention[0]  # level 1: 16x16 sites after the stem's pool
    frame, y, x = first.coords.unbind(1)
    on_patch = F.max_pool2d(relevant[:, None].float(), 2)[:, 0][frame, y, x] > 0
    kept_patch = (first.kept & on_patch).sum() / on_patch.sum()
    return {
        "final_loss": statistics.mean(losses[-20:]),
        "test_accuracy": accuracy,
        "relevant_sites_kept": kept_patch.item(),
        "attention_grad_norm": attention_grad / steps,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--top-p", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    for mode in ("mask", "weighted"):
        for seed in args.seeds:
            result = run(mode, seed, args.steps, args.top_p, args.batch_size)
            print(f"{mode:8s} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
