"""Feature-extraction FLOPs and wall time of FE2E and of MESM over top-p (the paper's Figure 5).

Feature extraction is what :mod:`mesm.models.flops` counts: the frame CNNs of the frame
modalities (faces, mel chunks) on the real frames of a batch. FLOPs come from the model's own
analytic count (``ModelOutput.flops``, per utterance, eval mode). Wall time is measured on the
frame CNNs alone, given the text [CLS] query computed once beforehand (the text model and the
frame Transformers are not timed, as they are not counted):

* ``forward``: eval mode under ``torch.inference_mode`` (inference latency of a batch);
* ``train``: train mode, forward + backward of the summed frame features (no optimizer step).

Configurations are timed round-robin (FE2E, MESM p1, MESM p2, ..., then again) so that every
one sees the same background load; the first ``warmup`` rounds are discarded and the median,
minimum and maximum of the remaining ``repeats`` are reported. Run it through
``experiments/flops.py``.

Letters: B batch, F real frames of a batch, C channels, H, W, D text feature size.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from mesm.data.batch import ModalityInput, SequenceInput, TokenInput
from mesm.models.encoders import SparseFrameCNN
from mesm.models.sparse import SubmanifoldConv2d, spconv_available

DEFAULT_TOP_PS: tuple[float, ...] = tuple(round(0.1 * step, 1) for step in range(1, 11))
FE2E = "fe2e"
MESM = "mesm"
DENSE_BACKEND = "dense"  # the backend column of FE2E rows
TEXT = "text"

Inputs = Mapping[str, ModalityInput]


def model_encoders(model: nn.Module) -> Mapping[str, nn.Module]:
    """The ``encoders`` ModuleDict of an FE2E/MESM model, keyed by modality."""
    return cast(Mapping[str, nn.Module], model.encoders)


@dataclass
class Timing:
    """Wall time of one configuration over the timed repeats, in milliseconds."""

    median_ms: float
    min_ms: float
    max_ms: float
    runs_ms: list[float]

    @classmethod
    def from_runs(cls, runs_ms: Sequence[float]) -> Timing:
        if not runs_ms:
            raise ValueError("no timed run: repeats must be >= 1")
        return cls(statistics.median(runs_ms), min(runs_ms), max(runs_ms), list(runs_ms))


@dataclass
class SweepRow:
    """One model configuration, on one device and backend when timed.

    Attributes:
        model: ``"fe2e"`` or ``"mesm"``.
        top_p: MESM's nucleus mass; None for FE2E.
        flops: feature-extraction FLOPs per utterance (mean over the counted utterances).
        flops_ratio: ``flops`` / FE2E's.
        modality_flops: frame modality -> its share of ``flops``.
        kept_fraction: frame modality -> kept fraction per attention level (MESM only).
        device: ``"cpu"`` or ``"cuda"``; None when not timed.
        backend: ``"torch"`` or ``"spconv"`` for MESM, ``"dense"`` for FE2E; None when not timed.
        forward: eval-mode forward time of one batch.
        train: train-mode forward + backward time of one batch.
        forward_time_ratio: forward median / FE2E's on the same device.
        train_time_ratio: train median / FE2E's on the same device.
    """

    model: str
    top_p: float | None
    flops: float
    flops_ratio: float
    modality_flops: dict[str, float] = field(default_factory=dict)
    kept_fraction: dict[str, list[float]] = field(default_factory=dict)
    device: str | None = None
    backend: str | None = None
    forward: Timing | None = None
    train: Timing | None = None
    forward_time_ratio: float | None = None
    train_time_ratio: float | None = None

    @property
    def label(self) -> str:
        return "FE2E" if self.top_p is None else f"MESM p={self.top_p:g}"


@dataclass
class SweepResult:
    """Rows of a sweep and the settings it ran with (written to the JSON file)."""

    rows: list[SweepRow]
    settings: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)

    def flops_rows(self) -> list[SweepRow]:
        """One row per model configuration (the first device's, FLOPs do not depend on it)."""
        seen: set[float | None] = set()
        unique = []
        for row in self.rows:
            if row.top_p not in seen:
                seen.add(row.top_p)
                unique.append(row)
        return unique


# ----------------------------------------------------------------------------- model knobs
def set_top_p(model: nn.Module, top_p: float) -> None:
    """Set the nucleus mass of every MESM frame CNN of ``model``."""
    encoders = [module for module in model.modules() if isinstance(module, SparseFrameCNN)]
    if not encoders:
        raise ValueError("the model has no MESM frame CNN whose top_p could be set")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    for encoder in encoders:
        encoder.top_p = top_p


def set_sparse_backend(model: nn.Module, backend: str) -> None:
    """Set the backend of every submanifold conv of ``model`` (weights are shared by all)."""
    for module in model.modules():
        if isinstance(module, SubmanifoldConv2d):
            module.backend = backend


def available_backends(device: torch.device) -> list[str]:
    """Sparse backends that run on ``device``: torch everywhere, spconv on CUDA when installed."""
    backends = ["torch"]
    if device.type == "cuda" and spconv_available():
        backends.append("spconv")
    return backends


def available_devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


# ----------------------------------------------------------------------------- inputs
def move_inputs(inputs: Inputs, device: torch.device) -> dict[str, ModalityInput]:
    return {name: value.to(device) for name, value in inputs.items()}


def utterance_count(inputs: Inputs) -> int:
    first = next(iter(inputs.values()))
    if isinstance(first, TokenInput):
        return int(first.input_ids.shape[0])
    assert isinstance(first, SequenceInput)
    return int(first.mask.shape[0])


@dataclass
class FrameWorkload:
    """The real frames of one frame modality of a batch, ready for its frame CNN.

    Attributes:
        encoder: the frame CNN.
        frames: (F, C, H, W).
        queries: (F, D) text feature of each frame's utterance, None for FE2E.
    """

    encoder: nn.Module
    frames: Tensor
    queries: Tensor | None


def frame_workloads(model: nn.Module, inputs: Inputs) -> list[FrameWorkload]:
    """Per frame modality, the frames and queries its frame CNN sees in ``model(inputs)``."""
    encoders = model_encoders(model)
    query = None
    if getattr(model, "text_queries_frames", False):
        with torch.no_grad():
            query = encoders[TEXT](inputs[TEXT]).detach()  # (B, D)
    workloads = []
    for name, encoder in encoders.items():
        if name == TEXT:
            continue
        sequence = inputs[name]
        if not isinstance(sequence, SequenceInput):
            raise TypeError(f"{name!r} must be a SequenceInput, got {type(sequence).__name__}")
        item, step = sequence.mask.nonzero(as_tuple=True)
        frames = sequence.values[item, step]  # (B, S, C, H, W) -> (F, C, H, W)
        queries = query[item] if query is not None else None  # (B, D) -> (F, D)
        frame_encoder = cast(nn.Module, encoder.frame_encoder)
        workloads.append(FrameWorkload(frame_encoder, frames, queries))
    return workloads


def extract_features(workloads: Sequence[FrameWorkload], backward: bool) -> None:
    """Run the frame CNNs on their frames; with ``backward``, backpropagate the summed features."""
    total: Tensor | None = None
    for work in workloads:
        features = work.encoder(work.frames, work.queries).features
        total = features.sum() if total is None else total + features.sum()
    if backward and total is not None:
        total.backward()


# ----------------------------------------------------------------------------- FLOPs
def count_flops(
    model: nn.Module, batches: Sequence[Inputs]
) -> tuple[float, dict[str, float], dict[str, list[float]]]:
    """Mean feature-extraction FLOPs per utterance of ``model`` (eval mode) over ``batches``.

    Returns:
        (FLOPs per utterance from ``ModelOutput.flops``, the same split by frame modality, kept
        fraction per attention level of each frame modality averaged over the batches).
    """
    model.eval()
    totals: list[Tensor] = []
    per_modality: dict[str, float] = {}
    kept: dict[str, list[Tensor]] = {}
    utterances = 0
    with torch.inference_mode():
        for inputs in batches:
            output = model(inputs)
            totals.append(output.flops.double().cpu())
            for name, fraction in output.kept_fraction.items():
                kept.setdefault(name, []).append(fraction.cpu())
            names = [name for name in model_encoders(model) if name != TEXT]
            for name, work in zip(names, frame_workloads(model, inputs), strict=True):
                flops = work.encoder(work.frames, work.queries).flops
                per_modality[name] = per_modality.get(name, 0.0) + float(flops.double().sum())
            utterances += utterance_count(inputs)
    mean_flops = float(torch.cat(totals).mean())
    modality_flops = {name: value / utterances for name, value in per_modality.items()}
    kept_fraction = {
        name: [float(v) for v in torch.stack(values).mean(dim=0)] for name, values in kept.items()
    }
    return mean_flops, modality_flops, kept_fraction


# ----------------------------------------------------------------------------- timing
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(
    model: nn.Module, workloads: Sequence[FrameWorkload], backward: bool, device: torch.device
) -> float:
    """Milliseconds of one feature extraction (gradients cleared beforehand, not timed)."""
    model.train(backward)
    model.zero_grad(set_to_none=True)
    context: AbstractContextManager[Any] = nullcontext() if backward else torch.inference_mode()
    _synchronize(device)
    start = time.perf_counter()
    with context:
        extract_features(workloads, backward)
    _synchronize(device)
    return (time.perf_counter() - start) * 1000.0


@dataclass
class _Config:
    model: nn.Module
    name: str
    top_p: float | None
    backend: str


def _time_round_robin(
    configs: Sequence[_Config],
    workloads: Mapping[str, list[FrameWorkload]],
    device: torch.device,
    repeats: int,
    warmup: int,
    say: Callable[[str], None],
) -> list[tuple[Timing, Timing]]:
    """(forward, train) timings of each config, measured A B C ... A B C ... (same load)."""
    runs: list[tuple[list[float], list[float]]] = [([], []) for _ in configs]
    for round_index in range(warmup + repeats):
        for config, (forward_runs, train_runs) in zip(configs, runs, strict=True):
            if config.top_p is not None:
                set_top_p(config.model, config.top_p)
                set_sparse_backend(config.model, config.backend)
            work = workloads[config.name]
            forward_ms = _time_once(config.model, work, backward=False, device=device)
            train_ms = _time_once(config.model, work, backward=True, device=device)
            if round_index >= warmup:
                forward_runs.append(forward_ms)
                train_runs.append(train_ms)
        label = "warm-up" if round_index < warmup else "timed"
        say(f"  {device.type}: round {round_index + 1}/{warmup + repeats} ({label}) done")
    return [(Timing.from_runs(f), Timing.from_runs(t)) for f, t in runs]


# ----------------------------------------------------------------------------- sweep
def run_sweep(
    fe2e: nn.Module,
    mesm: nn.Module,
    flops_batches: Sequence[Inputs],
    timing_batch: Inputs | None,
    top_ps: Sequence[float] = DEFAULT_TOP_PS,
    devices: Sequence[str] = ("cpu",),
    backends: Sequence[str] | None = None,
    repeats: int = 5,
    warmup: int = 1,
    settings: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> SweepResult:
    """FLOPs of FE2E and of MESM at each top-p, and their timings per device and backend.

    Args:
        fe2e: the dense model.
        mesm: the sparse model (its ``top_p`` and backend are changed in place).
        flops_batches: batches the FLOPs are averaged over (CPU tensors).
        timing_batch: the batch that is timed; None counts FLOPs only.
        top_ps: MESM nucleus masses, each in (0, 1].
        devices: ``"cpu"`` and/or ``"cuda"``.
        backends: sparse backends to time; None: every one available on each device.
        repeats: timed rounds; warmup: discarded rounds before them.
        settings: extra settings recorded in the result.
        say: progress messages.
    """
    if not top_ps:
        raise ValueError("give at least one top-p")
    say("counting FLOPs")
    fe2e_flops, fe2e_modality, _ = count_flops(fe2e, flops_batches)
    flops_rows = [SweepRow(FE2E, None, fe2e_flops, 1.0, fe2e_modality)]
    for top_p in top_ps:
        set_top_p(mesm, top_p)
        flops, modality, kept = count_flops(mesm, flops_batches)
        flops_rows.append(SweepRow(MESM, top_p, flops, flops / fe2e_flops, modality, kept))
    recorded = {
        **dict(settings or {}),
        "top_ps": list(top_ps),
        "repeats": repeats,
        "warmup": warmup,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if timing_batch is None:
        return SweepResult(flops_rows, recorded)

    rows: list[SweepRow] = []
    for device_name in devices:
        device = torch.device(device_name)
        chosen = available_backends(device) if backends is None else list(backends)
        missing = [b for b in chosen if b not in available_backends(device)]
        if missing:
            raise ValueError(f"backend(s) {missing} cannot run on {device_name}")
        fe2e.to(device)
        mesm.to(device)
        batch = move_inputs(timing_batch, device)
        workloads = {FE2E: frame_workloads(fe2e, batch), MESM: frame_workloads(mesm, batch)}
        configs = [_Config(fe2e, FE2E, None, DENSE_BACKEND)]
        configs += [_Config(mesm, MESM, top_p, backend) for backend in chosen for top_p in top_ps]
        say(f"timing {len(configs)} configurations on {device_name}")
        timings = _time_round_robin(configs, workloads, device, repeats, warmup, say)
        dense_forward, dense_train = timings[0]
        for config, (forward, train) in zip(configs, timings, strict=True):
            base = (
                flops_rows[0]
                if config.top_p is None
                else flops_rows[1 + list(top_ps).index(config.top_p)]
            )
            rows.append(
                SweepRow(
                    model=base.model,
                    top_p=base.top_p,
                    flops=base.flops,
                    flops_ratio=base.flops_ratio,
                    modality_flops=base.modality_flops,
                    kept_fraction=base.kept_fraction,
                    device=device_name,
                    backend=config.backend,
                    forward=forward,
                    train=train,
                    forward_time_ratio=forward.median_ms / dense_forward.median_ms,
                    train_time_ratio=train.median_ms / dense_train.median_ms,
                )
            )
        fe2e.to("cpu")
        mesm.to("cpu")
    return SweepResult(rows, recorded)


# ----------------------------------------------------------------------------- models and data
@dataclass
class SweepModels:
    """The FE2E and MESM models of a sweep.

    Attributes:
        fe2e: dense model.
        mesm: sparse model.
        text_model: folder the text encoders were built from.
        modalities: the models' modalities.
        attention: ``"trained"`` (MESM from a MESM checkpoint) or ``"initial"``.
        source: where the weights come from, for the record.
    """

    fe2e: nn.Module
    mesm: nn.Module
    text_model: str | None
    modalities: tuple[str, ...]
    attention: str
    source: str


def build_sweep_models(
    checkpoint: str | os.PathLike[str] | None, text_model: str | None, seed: int = 0
) -> SweepModels:
    """FE2E and MESM with initial weights, or MESM from a checkpoint (or run folder).

    With a checkpoint, MESM is the trained model (trained attention when it is a MESM
    checkpoint; an FE2E checkpoint gives MESM its CNN weights and initial attention) and FE2E is
    built with the same options and given every weight of the same name: the timing of a dense
    CNN does not depend on its weights, its FLOPs never do.

    Args:
        checkpoint: ``best.pt``/``last.pt`` or a run folder; None for initial weights.
        text_model: text model folder or name when there is no checkpoint.
        seed: seed of the initial weights.
    """
    from mesm.bench.common import load_checkpoint_model
    from mesm.models import build_model
    from mesm.train.experiment import RunConfig, model_kwargs

    if checkpoint is None:
        if text_model is None:
            raise ValueError("give a checkpoint or a text model")
        torch.manual_seed(seed)
        fe2e = build_model(FE2E, num_classes=6, text_model=text_model)
        torch.manual_seed(seed)
        mesm = build_model(MESM, num_classes=6, text_model=text_model, sparse_backend="torch")
        modalities = tuple(model_encoders(mesm))
        return SweepModels(fe2e, mesm, text_model, modalities, "initial", "initial weights")
    loaded = load_checkpoint_model(checkpoint, sparse_backend="torch")
    known = {name for name in RunConfig.__dataclass_fields__}
    config = RunConfig(**{k: v for k, v in loaded.config.items() if k in known})
    config.sparse_backend = "torch"
    num_classes = len(loaded.class_names)
    state = loaded.model.state_dict()
    builds = {}
    for name in (FE2E, MESM):
        if loaded.config.get("model") == name:
            builds[name] = loaded.model
            continue
        config.model = name
        torch.manual_seed(seed)
        model = build_model(name, **model_kwargs(config, num_classes, loaded.text_model))
        model.load_state_dict(state, strict=False)  # every weight of the same name
        builds[name] = model.eval()
    attention = "trained" if loaded.config.get("model") == MESM else "initial"
    return SweepModels(
        builds[FE2E],
        builds[MESM],
        loaded.text_model,
        tuple(model_encoders(builds[MESM])),
        attention,
        str(loaded.path),
    )


def dataset_inputs(
    data: str | os.PathLike[str],
    split: str,
    utterances: int,
    modalities: Sequence[str],
    text_model: str | None,
    text_max_len: int = 50,
    frame_interval_ms: float | None = 500.0,
    seed: int = 0,
) -> tuple[dict[str, ModalityInput], dict[str, Any]]:
    """``utterances`` random utterances of a processed split, collated into one padded batch.

    Returns:
        (inputs, a description: split, ids, face-frame and chunk counts per utterance).
    """
    from mesm.data.collate import Collator
    from mesm.data.dataset import ProcessedDataset

    dataset = ProcessedDataset(Path(data), split, frame_interval_ms=frame_interval_ms)
    if len(dataset) == 0:
        raise ValueError(f"{data} has no usable utterance in split {split!r}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)[:utterances].tolist()
    items = [dataset[index] for index in order]
    tokenizer = None
    if TEXT in modalities:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(text_model)
    batch = Collator(modalities, tokenizer=tokenizer, text_max_len=text_max_len)(items)
    description = {
        "data": str(data),
        "split": split,
        "ids": batch.ids,
        "face_frames": [int(item["faces"].shape[0]) for item in items],
        "audio_chunks": [int(item["audio"].shape[0]) for item in items],
    }
    return batch.inputs, description


def scratch_text_model(data: str | os.PathLike[str], folder: str | os.PathLike[str]) -> str:
    """A from-scratch text model in ``folder``, its tokenizer learned on ``data``'s train split."""
    from mesm.data.dataset import ProcessedDataset
    from mesm.train.text_model import build_text_model

    train = ProcessedDataset(Path(data), "train")
    return str(build_text_model([record.text for record in train.records], Path(folder)))


def sweep_inputs(
    models: SweepModels,
    *,
    data: str | os.PathLike[str] | None = None,
    split: str = "valid",
    utterances: int = 8,
    batch_size: int = 8,
    face_frames: int = 9,
    audio_chunks: int = 12,
    seed: int = 0,
) -> tuple[list[dict[str, ModalityInput]], dict[str, Any]]:
    """Batches of ``max(utterances, batch_size)`` utterances for a sweep, and their description.

    Real utterances of ``data`` (their own lengths, padded) when given, else full-length random
    ones of ``face_frames`` faces and ``audio_chunks`` chunks. The first batch is the timed one.
    """
    from mesm.bench.common import synthetic_batch

    if batch_size < 1 or utterances < 1:
        raise ValueError("batch_size and utterances must be >= 1")
    count = max(utterances, batch_size)
    description: dict[str, Any]
    if data is not None:
        inputs, description = dataset_inputs(
            data, split, count, models.modalities, models.text_model, seed=seed
        )
    else:
        text_encoder = model_encoders(models.mesm)[TEXT]
        vocab_size = int(cast(Any, text_encoder).model.config.vocab_size)
        batch = synthetic_batch(count, face_frames, audio_chunks, seed=seed, vocab_size=vocab_size)
        inputs = {name: batch[name] for name in models.modalities}
        description = {
            "synthetic": True,
            "face_frames": face_frames,
            "audio_chunks": audio_chunks,
        }
    description["utterances"] = count
    return list(iter_batches(inputs, batch_size)), description


# ----------------------------------------------------------------------------- run folders
def read_run_metric(
    run_dir: str | os.PathLike[str], metric: str = "f1", split: str = "validation"
) -> dict[str, Any]:
    """Model, top-p and one average metric of a run folder (``config.yaml`` + ``metrics.json``).

    Args:
        run_dir: a run folder written by ``experiments/run.py``.
        metric: a key of the split's ``average`` entry (``f1``, ``accuracy``, ...).
        split: ``validation`` or ``test``.

    Raises:
        FileNotFoundError: a file is missing. KeyError: the split or metric is not there.
    """
    import yaml

    folder = Path(run_dir)
    config_path, metrics_path = folder / "config.yaml", folder / "metrics.json"
    for path in (config_path, metrics_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: is {folder} a finished run folder?")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    if split not in metrics:
        raise KeyError(f"{metrics_path} has no {split!r} entry")
    average = metrics[split]["average"]
    if metric not in average:
        raise KeyError(f"{metrics_path} has no average {metric!r}; it has {sorted(average)}")
    model = str(config.get("model"))
    return {
        "run": str(folder),
        "model": model,
        "top_p": None if model != MESM else float(config["top_p"]),
        "metric": metric,
        "split": split,
        "value": average[metric],
    }


# ----------------------------------------------------------------------------- writing
CSV_COLUMNS: tuple[str, ...] = (
    "model",
    "top_p",
    "flops",
    "flops_ratio",
    "device",
    "backend",
    "forward_ms",
    "forward_min_ms",
    "forward_max_ms",
    "train_ms",
    "train_min_ms",
    "train_max_ms",
    "forward_time_ratio",
    "train_time_ratio",
    "flops_vision",
    "flops_audio",
    "kept_vision",
    "kept_audio",
)


def _csv_values(row: SweepRow) -> dict[str, Any]:
    def timing(value: Timing | None, key: str) -> Any:
        return "" if value is None else getattr(value, key)

    return {
        "model": row.model,
        "top_p": "" if row.top_p is None else row.top_p,
        "flops": row.flops,
        "flops_ratio": row.flops_ratio,
        "device": row.device or "",
        "backend": row.backend or "",
        "forward_ms": timing(row.forward, "median_ms"),
        "forward_min_ms": timing(row.forward, "min_ms"),
        "forward_max_ms": timing(row.forward, "max_ms"),
        "train_ms": timing(row.train, "median_ms"),
        "train_min_ms": timing(row.train, "min_ms"),
        "train_max_ms": timing(row.train, "max_ms"),
        "forward_time_ratio": "" if row.forward_time_ratio is None else row.forward_time_ratio,
        "train_time_ratio": "" if row.train_time_ratio is None else row.train_time_ratio,
        "flops_vision": row.modality_flops.get("vision", ""),
        "flops_audio": row.modality_flops.get("audio", ""),
        "kept_vision": " ".join(f"{v:.4f}" for v in row.kept_fraction.get("vision", [])),
        "kept_audio": " ".join(f"{v:.4f}" for v in row.kept_fraction.get("audio", [])),
    }


def write_csv(result: SweepResult, path: str | os.PathLike[str]) -> Path:
    """One line per row, columns :data:`CSV_COLUMNS` (times in ms, FLOPs per utterance)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for row in result.rows:
            writer.writerow(_csv_values(row))
    return path


def write_json(result: SweepResult, path: str | os.PathLike[str]) -> Path:
    """Settings, every row (with each timed run) and the run-folder metrics."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "settings": result.settings,
        "rows": [asdict(row) for row in result.rows],
        "runs": result.runs,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def format_table(result: SweepResult) -> str:
    """Markdown table: p, GFLOPs, ratio, forward ms, forward+backward ms (medians)."""
    lines = [
        "| model | device | backend | GFLOPs/utt | FLOPs ratio | forward ms | fwd+bwd ms "
        "| fwd+bwd time ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result.rows:
        forward = "-" if row.forward is None else f"{row.forward.median_ms:.0f}"
        train = "-" if row.train is None else f"{row.train.median_ms:.0f}"
        if row.train is not None:
            train += f" ({row.train.min_ms:.0f}-{row.train.max_ms:.0f})"
        ratio = "-" if row.train_time_ratio is None else f"{row.train_time_ratio:.2f}"
        lines.append(
            f"| {row.label} | {row.device or '-'} | {row.backend or '-'} | "
            f"{row.flops / 1e9:.2f} | {row.flops_ratio:.2f} | {forward} | {train} | {ratio} |"
        )
    return "\n".join(lines)


def iter_batches(inputs: Inputs, batch_size: int) -> Iterator[dict[str, ModalityInput]]:
    """Split a batch of inputs into batches of at most ``batch_size`` utterances."""
    total = utterance_count(inputs)
    for start in range(0, total, batch_size):
        part: dict[str, ModalityInput] = {}
        for name, value in inputs.items():
            if isinstance(value, TokenInput):
                part[name] = TokenInput(
                    value.input_ids[start : start + batch_size],
                    value.attention_mask[start : start + batch_size],
                )
            else:
                part[name] = SequenceInput(
                    value.values[start : start + batch_size], value.mask[start : start + batch_size]
                )
        yield part


__all__ = [
    "DEFAULT_TOP_PS",
    "FrameWorkload",
    "SweepModels",
    "SweepResult",
    "SweepRow",
    "Timing",
    "available_backends",
    "available_devices",
    "build_sweep_models",
    "count_flops",
    "dataset_inputs",
    "iter_batches",
    "model_encoders",
    "scratch_text_model",
    "sweep_inputs",
    "format_table",
    "frame_workloads",
    "read_run_metric",
    "run_sweep",
    "set_sparse_backend",
    "set_top_p",
    "write_csv",
    "write_json",
]
