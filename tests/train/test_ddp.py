"""Two-process data-parallel training on CPU with gloo: it finishes and both ranks agree."""

from __future__ import annotations

import lightning as L
import torch
from tiny_training import CLASS_NAMES, TinyDataset, TinyModel, WriteStateHash, collate, state_hash

from mesm.train.fit import fit
from mesm.train.sampling import make_loader


def test_two_process_gloo_training_agrees_on_the_model(tmp_path, monkeypatch):
    # Spawning pickles the in-memory dataset's tensors; the default file-descriptor sharing can
    # exceed what spawn passes to a child ("bad value(s) in fds_to_keep"), shared files do not.
    previous = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    try:
        _train_two_processes(tmp_path)
    finally:
        torch.multiprocessing.set_sharing_strategy(previous)


def _train_two_processes(tmp_path):
    train, val, test = TinyDataset(32, 1, "tr"), TinyDataset(16, 2, "va"), TinyDataset(16, 3, "te")
    hashes = tmp_path / "hashes"
    hashes.mkdir()
    L.seed_everything(0, workers=True, verbose=False)
    result = fit(
        TinyModel(),
        train_loader=make_loader(train, batch_size=4, collate_fn=collate, shuffle=True, seed=0),
        val_loader=make_loader(val, batch_size=4, collate_fn=collate, shuffle=False),
        test_loader=make_loader(test, batch_size=4, collate_fn=collate, shuffle=False),
        class_names=CLASS_NAMES,
        train_labels=train.label_matrix(),
        config={"model": "tiny"},
        out_dir=tmp_path / "run",
        dataset_kind="demo",
        lr=0.01,
        epochs=2,
        devices=2,
        accelerator="cpu",
        start_method="spawn",  # "popen" would re-launch pytest itself
        progress_bar=False,
        callbacks=[WriteStateHash(str(hashes))],
    )
    written = sorted(path.name for path in hashes.iterdir())
    assert written == ["rank0_of_2.txt", "rank1_of_2.txt"]
    rank_hashes = {path.read_text() for path in hashes.iterdir()}
    assert len(rank_hashes) == 1  # both ranks hold identical weights
    # The exported last checkpoint is that same model.
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state_hash(last["state_dict"]) in rank_hashes
    # Each rank trained on half the data: 32 items / (2 ranks * batch 4) = 4 steps per epoch.
    assert last["training"]["global_step"] == 8
    assert result.metrics["test"]["num_samples"] == len(test)
