"""One experiment from a config: prepare the data, train (or evaluate) each seed, aggregate.

``experiments/run.py`` only parses flags into a :class:`RunConfig` and calls :func:`run_experiment`.
Values are resolved in this order, later wins::

    RunConfig defaults (the paper's)  <  DATASET_PRESETS[dataset]  <  --config FILE.yaml  <  flags

and the resolved config is written to ``<out>/config.yaml``. With several seeds every seed trains
into ``<out>/seed-<S>/`` and ``<out>/seeds_summary.json`` holds the mean and std of the test
metrics; with one seed ``<out>`` is the run folder itself (see :mod:`mesm.train.fit` for its files).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import yaml

from mesm.data.batch import MODALITIES
from mesm.data.collate import Collator
from mesm.data.dataset import ProcessedDataset
from mesm.data.format import read_info
from mesm.models import build_model, list_models
from mesm.models.registry import model_builder
from mesm.train.checkpoint import MODEL_CONFIG_KEYS, load_checkpoint
from mesm.train.fit import RunResult, evaluate, fit, launched_by_torchrun
from mesm.train.metrics import primary_metrics
from mesm.train.sampling import make_loader
from mesm.train.text_model import build_text_model

DATASETS = ("iemocap", "mosei", "demo")
MODALITY_LETTERS = {"t": "text", "a": "audio", "v": "vision"}
# The text_model value that asks for a small BERT trained from scratch on the training transcripts.
SCRATCH_TEXT_MODEL = "scratch"
SPLITS = ("train", "valid", "test")
# Run-config keys that say which data a run used (an --eval-only run inherits them).
DATA_CONFIG_KEYS = (
    "dataset",
    "data",
    "demo_sessions",
    "demo_dialogs_per_session",
    "demo_utterances_per_dialog",
)


@dataclass
class RunConfig:
    """Everything a run depends on (plain values, written to ``config.yaml``).

    Defaults are the paper's (``../shared/docs/MESM.md`` section 3); ``None`` means "resolved from
    the other values" (see :func:`resolve_config`).
    """

    dataset: str | None = None  # iemocap | mosei | demo; None: demo without --data, else the data's
    data: str | None = None  # processed folder; for the demo, where it is generated
    model: str | None = None  # a registered name; None: mesm when top_p is given, else fe2e
    top_p: float | None = None  # MESM nucleus mass; None: 0.5 for mesm
    modalities: str = "tav"
    attention: str | None = None  # mask | weighted; None: the model's default
    sparse_backend: str = "auto"
    text_model: str = "albert-base-v2"  # Hugging Face name or path, or "scratch"
    text_max_len: int = 50
    img_interval: float = 500.0  # milliseconds between face frames
    epochs: int = 40
    batch_size: int | None = None  # None: 8 for dense models, 2 for mesm (the paper's)
    lr: float = 5e-5
    text_lr_factor: float = 10.0
    weight_decay: float = 0.0
    early_stop: int = 6
    seeds: list[int] = field(default_factory=lambda: [0])
    out: str | None = None  # None: runs/<dataset>-<model>[-p<top_p>]
    resume: bool = False
    eval_only: bool = False
    checkpoint: str | None = None
    precision: str = "32-true"
    devices: int = 1
    accelerator: str = "auto"
    num_workers: int = 0
    progress: bool = True
    # Demo only: size of the generated IEMOCAP-layout tree.
    demo_sessions: int = 2
    demo_dialogs_per_session: int = 4
    demo_utterances_per_dialog: int = 30

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_stored(cls, values: Mapping[str, Any]) -> RunConfig:
        """A config read back from a checkpoint or ``config.yaml``.

        Keys this class does not hold (e.g. a checkpoint's ``data_format``) are ignored, and a
        modality list is turned back into its letter code.
        """
        known = {item.name for item in dataclasses.fields(cls)}
        config = cls(**{key: value for key, value in values.items() if key in known})
        if not isinstance(config.modalities, str):
            config.modalities = "".join(str(name)[0] for name in config.modalities)
        return config


# Per-dataset values that differ from the paper's defaults. The demo trains a small text encoder
# from scratch because no pretrained model can be downloaded offline: an explicit choice, printed.
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "iemocap": {},
    "mosei": {},
    "demo": {
        "text_model": SCRATCH_TEXT_MODEL,
        "epochs": 6,
        "batch_size": 8,
        "lr": 1e-3,
        "text_lr_factor": 1.0,
        "early_stop": 3,
        "img_interval": 500.0,
    },
}


class ConfigError(ValueError):
    """A run config that cannot work (unknown value, missing data, conflicting options)."""


# --------------------------------------------------------------------------------- config
def parse_modalities(code: str) -> tuple[str, ...]:
    """``"tav"`` -> ``("text", "audio", "vision")`` in the canonical order."""
    unknown = sorted(set(code) - set(MODALITY_LETTERS))
    if not code or unknown:
        raise ConfigError(
            f"modalities must be letters among t, a, v (e.g. tav, ta, v), got {code!r}"
        )
    chosen = {MODALITY_LETTERS[letter] for letter in code}
    return tuple(name for name in MODALITIES if name in chosen)


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML run config (keys as in :class:`RunConfig`, dashes or underscores)."""
    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return {str(key).replace("-", "_"): value for key, value in values.items()}


def resolve_config(
    file_values: Mapping[str, Any] | None = None, flag_values: Mapping[str, Any] | None = None
) -> RunConfig:
    """Merge defaults < dataset preset < config file < flags, then fill the derived values.

    Args:
        file_values: the ``--config`` file's values.
        flag_values: values given explicitly on the command line (absent flags left out).

    Raises:
        ConfigError: unknown keys or values, missing data folders.
    """
    known = {f.name for f in dataclasses.fields(RunConfig)}
    given: dict[str, Any] = {}
    for source, values in (("config file", file_values or {}), ("flags", flag_values or {})):
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) in {source}: {unknown}")
        given.update(values)
    if isinstance(given.get("seeds"), int):
        given["seeds"] = [given["seeds"]]

    dataset = given.get("dataset")
    if dataset is None:
        data = given.get("data")
        dataset = "demo" if data is None else _dataset_of_folder(data)
    if dataset not in DATASETS:
        raise ConfigError(f"--dataset must be one of {DATASETS}, got {dataset!r}")
    values = {**DATASET_PRESETS[dataset], **given, "dataset": dataset}
    config = RunConfig(**values)

    if config.model is None:
        config.model = "mesm" if config.top_p is not None else "fe2e"
    if config.model not in list_models():
        raise ConfigError(f"unknown --model {config.model!r}; registered: {list_models()}")
    options = _builder_options(config.model)
    if "top_p" in options:
        if config.top_p is None:
            config.top_p = float(options["top_p"].default)
        if not 0.0 < config.top_p <= 1.0:
            raise ConfigError(f"--top-p must be in (0, 1], got {config.top_p}")
    elif config.top_p is not None:
        raise ConfigError(f"--top-p applies to sparse models; {config.model!r} has no top-p")
    if "attention" in options and config.attention is None:
        config.attention = str(options["attention"].default)
    modalities = parse_modalities(config.modalities)
    config.modalities = "".join(name[0] for name in modalities)
    if config.batch_size is None:
        config.batch_size = 2 if "top_p" in options else 8
    if not config.seeds:
        raise ConfigError("--seeds needs at least one seed")
    if config.out is None:
        suffix = f"-p{config.top_p:g}" if config.top_p is not None else ""
        config.out = str(Path("runs") / f"{config.dataset}-{config.model}{suffix}")
    if config.eval_only and config.checkpoint is None:
        raise ConfigError("--eval-only needs --checkpoint FILE (a best.pt or last.pt)")
    if config.eval_only and config.resume:
        raise ConfigError("--eval-only and --resume cannot be combined")
    if config.data is None:
        if config.dataset != "demo":
            raise ConfigError(
                f"--dataset {config.dataset} needs --data DIR, a folder built by "
                f"preprocessing/build_{config.dataset}.py"
            )
        config.data = "demo_data"
    return config


def _dataset_of_folder(data: str) -> str:
    try:
        return read_info(Path(data)).dataset
    except Exception as error:  # FormatError, OSError: name the folder either way
        raise ConfigError(f"--data {data}: not a processed dataset folder ({error})") from error


def _builder_options(model: str) -> Mapping[str, inspect.Parameter]:
    """The keyword arguments the registered builder of ``model`` declares."""
    return inspect.signature(model_builder(model)).parameters


def model_kwargs(config: RunConfig, num_classes: int, text_model: str | None) -> dict[str, Any]:
    """Keyword arguments for ``build_model(config.model, ...)``: only those the builder takes."""
    options = _builder_options(str(config.model))
    kwargs: dict[str, Any] = {
        "num_classes": num_classes,
        "modalities": parse_modalities(config.modalities),
        "text_model": text_model,
    }
    for key in ("top_p", "attention", "sparse_backend"):
        if key in options:
            kwargs[key] = getattr(config, key)
    return kwargs


def locate_text_model(name: str, checkpoint: Path) -> str:
    """A checkpoint's text model: as stored, else the folder of that name beside the checkpoint
    (a run folder that was moved or copied elsewhere), else the name itself (a hub name)."""
    if Path(name).is_dir():
        return name
    beside = checkpoint.parent / Path(name).name
    return str(beside) if (beside / "config.json").is_file() else name


def write_config(config: RunConfig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
    return path


# --------------------------------------------------------------------------------- ranks
def is_rank_zero() -> bool:
    """True in the process that prepares data and prints (rank 0, or no distributed launch)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


@contextmanager
def _rank_zero_first(marker: Path, timeout_s: float = 3600.0) -> Iterator[bool]:
    """Let rank 0 do a preparation step while other torchrun ranks wait for its marker file.

    Yields True when this process must do the work (and then writes the marker), False when the
    marker already exists or another rank did it.
    """
    if marker.is_file():
        yield False
        return
    if launched_by_torchrun() and not is_rank_zero():
        deadline = time.monotonic() + timeout_s
        while not marker.is_file():
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank 0 did not finish preparing {marker.parent} in time")
            time.sleep(1.0)
        yield False
        return
    yield True
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("ready\n", encoding="utf-8")


def _say(message: str) -> None:
    if is_rank_zero():
        print(message, flush=True)


# --------------------------------------------------------------------------------- data
def prepare_demo_data(config: RunConfig) -> Path:
    """Generate the demo IEMOCAP-layout tree and build it like ``build_iemocap.py`` (once).

    The tree is written to ``<data>/raw`` and reorganised into ``<data>/iemocap`` with a stratified
    70/10/20 resplit (seed 0): the paper's lists name real IEMOCAP utterances, not demo ones.
    """
    from mesm.data.iemocap import build_iemocap
    from mesm.data.synthetic import make_iemocap_tree

    root = Path(str(config.data))
    processed = root / "iemocap"
    size = (
        f"{config.demo_sessions}x{config.demo_dialogs_per_session}"
        f"x{config.demo_utterances_per_dialog}"
    )
    with _rank_zero_first(root / f".ready-{size}") as must_build:
        if must_build:
            if (root / "raw").exists() or processed.exists():
                raise ConfigError(
                    f"{root} holds a demo dataset of another size or an unfinished build; remove "
                    "it or pass another --data"
                )
            _say(f"demo: generating a raw IEMOCAP-layout tree ({size} utterances) in {root}/raw")
            make_iemocap_tree(
                root / "raw",
                sessions=config.demo_sessions,
                dialogs_per_session=config.demo_dialogs_per_session,
                utterances_per_dialog=config.demo_utterances_per_dialog,
            )
            _say(f"demo: reorganising it into {processed} (as preprocessing/build_iemocap.py)")
            summary = build_iemocap(
                root / "raw", processed, resplit_seed=0, progress=config.progress
            )
            _say(summary.format())
            if summary.exit_code(strict=True) != 0:
                raise RuntimeError(f"the demo build failed; see the summary above ({processed})")
    return processed


def load_splits(config: RunConfig, processed: Path) -> dict[str, ProcessedDataset]:
    """The train/valid/test datasets of a processed folder; an empty split is an error."""
    datasets = {
        split: ProcessedDataset(processed, split, frame_interval_ms=config.img_interval)
        for split in SPLITS
    }
    empty = [split for split, dataset in datasets.items() if len(dataset) == 0]
    if empty:
        raise ConfigError(f"{processed} has no utterance in split(s) {empty}")
    info_dataset = datasets["train"].info.dataset
    expected = "iemocap" if config.dataset == "demo" else config.dataset
    if info_dataset != expected:
        raise ConfigError(f"--data {processed} holds {info_dataset}, not {config.dataset}")
    return datasets


def resolve_text_model(config: RunConfig, train: ProcessedDataset, run_dir: Path, seed: int) -> str:
    """The text model to load: a name/path as given, or a from-scratch model built for this run."""
    if config.text_model != SCRATCH_TEXT_MODEL:
        return config.text_model
    folder = run_dir / "text_model"
    with _rank_zero_first(folder / ".ready") as must_build:
        if must_build:
            build_text_model(
                [record.text for record in train.records],
                folder,
                max_positions=max(64, config.text_max_len),
                seed=seed,
            )
    _say(
        "text encoder: a 2-layer BERT with a WordPiece vocabulary learned from the TRAINING "
        f"transcripts, trained from scratch (text_model: scratch), saved in {folder}"
    )
    return str(folder)


def _tokenizer(text_model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(text_model)


# --------------------------------------------------------------------------------- runs
class TrainThroughput(L.Callback):
    """Training samples per second (all ranks together), timed over training batches only."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.seconds += time.perf_counter() - self._start
        # Every data-parallel rank trains an equal share of the batches at the same time.
        self.samples += len(batch.ids) * trainer.world_size

    def summary(self) -> dict[str, float]:
        rate = self.samples / self.seconds if self.seconds > 0 else float("nan")
        return {"samples": self.samples, "seconds": self.seconds, "samples_per_second": rate}


def run_one_seed(
    config: RunConfig, datasets: Mapping[str, ProcessedDataset], seed: int, run_dir: Path
) -> RunResult:
    """Train (or evaluate) one seed into ``run_dir``."""
    kind = str(config.dataset)
    class_names = list(datasets["train"].classes)
    modalities = parse_modalities(config.modalities)
    run_config = dataclasses.replace(config, seeds=[seed], out=str(run_dir))
    L.seed_everything(seed, workers=True, verbose=False)

    text_model: str | None = None
    if "text" in modalities:
        text_model = resolve_text_model(config, datasets["train"], run_dir, seed)
        run_config.text_model = text_model
    write_config(run_config, run_dir / "config.yaml")
    # Seeded again so the initial weights do not depend on whether a text model was built.
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(str(config.model), **model_kwargs(config, len(class_names), text_model))
    collate = Collator(
        modalities,
        tokenizer=None if text_model is None else _tokenizer(text_model),
        text_max_len=config.text_max_len,
    )
    loaders = {
        split: make_loader(
            datasets[split],
            batch_size=int(config.batch_size or 1),
            collate_fn=collate,
            shuffle=split == "train",
            seed=seed,
            num_workers=config.num_workers,
        )
        for split in SPLITS
    }
    plain_config = run_config.to_dict()
    # How the data were built (fps, mel parameters): `mesm predict` rebuilds inputs the same way.
    plain_config["data_format"] = datasets["train"].info.to_dict()
    if config.eval_only:
        return evaluate(
            model,
            checkpoint_path=str(config.checkpoint),
            val_loader=loaders["valid"],
            test_loader=loaders["test"],
            class_names=class_names,
            config=plain_config,
            out_dir=run_dir,
            dataset_kind=kind,
            accelerator=config.accelerator,
        )
    throughput = TrainThroughput()
    result = fit(
        model,
        train_loader=loaders["train"],
        val_loader=loaders["valid"],
        test_loader=loaders["test"],
        class_names=class_names,
        train_labels=datasets["train"].label_matrix(),
        config=plain_config,
        out_dir=run_dir,
        dataset_kind=kind,
        lr=config.lr,
        text_lr_factor=config.text_lr_factor,
        weight_decay=config.weight_decay,
        epochs=config.epochs,
        early_stop=config.early_stop,
        precision=config.precision,
        devices=config.devices,
        accelerator=config.accelerator,
        seed=seed,
        resume=config.resume,
        progress_bar=config.progress,
        # Text architectures without an add_pooling_layer option keep a pooler that gets no
        # gradient; DDP must tolerate it.
        find_unused_parameters=True,
        callbacks=[throughput],
    )
    if result.is_global_zero:
        timing = {"train": throughput.summary(), "num_train_items": len(datasets["train"])}
        result.files["timing"] = run_dir / "timing.json"
        result.files["timing"].write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
        result.metrics["timing"] = timing
    return result


def eval_only_config(config: RunConfig, flag_values: Mapping[str, Any]) -> RunConfig:
    """For ``--eval-only``, take the model and data values not given explicitly from the checkpoint.

    So ``--eval-only --checkpoint FILE`` alone evaluates on the data the model was trained on.
    Explicitly given model values that differ from the checkpoint's are kept, so the checkpoint
    loader refuses them with a message naming what differs.
    """
    checkpoint = load_checkpoint(str(config.checkpoint))
    stored = RunConfig.from_stored(checkpoint.config)
    updates = {
        key: getattr(stored, key)
        for key in (*MODEL_CONFIG_KEYS, *DATA_CONFIG_KEYS)
        if key in checkpoint.config and key not in flag_values and hasattr(config, key)
    }
    resolved = dataclasses.replace(config, **updates)
    if "out" not in flag_values:
        checkpoint_path = Path(str(config.checkpoint))
        resolved.out = str(checkpoint_path.parent / f"eval-{checkpoint_path.stem}")
    return resolved


def aggregate_seeds(results: Mapping[int, RunResult], dataset_kind: str) -> dict[str, Any]:
    """Mean and (sample) std over seeds of the test averages and per-class primary metrics."""
    keys = primary_metrics(dataset_kind)
    rows: dict[str, list[float]] = {}
    for result in results.values():
        test = result.metrics["test"]
        values: dict[str, float | None] = {f"average_{k}": test["average"].get(k) for k in keys}
        values["micro_f1"] = test["micro_f1"]
        values["macro_f1"] = test["macro_f1"]
        if test.get("single_label"):
            values["argmax_accuracy"] = test["single_label"]["argmax_accuracy"]
            values["balanced_accuracy"] = test["single_label"]["balanced_accuracy"]
        for name, entry in test["per_class"].items():
            for key in keys:
                values[f"{name}_{key}"] = entry.get(key)
        for key, value in values.items():
            if value is not None:
                rows.setdefault(key, []).append(float(value))
    return {
        "seeds": list(results),
        "test": {
            key: {
                "mean": float(np.mean(vals)),
                "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                "values": vals,
            }
            for key, vals in rows.items()
        },
    }


def format_seed_summary(summary: Mapping[str, Any]) -> str:
    lines = [f"test metrics over seeds {summary['seeds']} (mean +- std, %):"]
    for key, entry in summary["test"].items():
        lines.append(f"  {key:<28} {100 * entry['mean']:6.2f} +- {100 * entry['std']:5.2f}")
    return "\n".join(lines)


def run_experiment(config: RunConfig, say: Callable[[str], None] = _say) -> dict[int, RunResult]:
    """Prepare the data, then train or evaluate every seed; print where results are."""
    started = time.perf_counter()
    if config.dataset == "demo":
        processed = prepare_demo_data(config)
    else:
        processed = Path(str(config.data))
    datasets = load_splits(config, processed)
    out = Path(str(config.out))
    say(
        f"{config.model} on {config.dataset} ({processed}): "
        + ", ".join(f"{split} {len(datasets[split])}" for split in SPLITS)
        + f" utterances; classes {list(datasets['train'].classes)}"
    )
    several = len(config.seeds) > 1
    results: dict[int, RunResult] = {}
    for seed in config.seeds:
        run_dir = out / f"seed-{seed}" if several else out
        results[seed] = run_one_seed(config, datasets, seed, run_dir)
        result = results[seed]
        if result.is_global_zero:
            say(f"\n== seed {seed}: run folder {run_dir} ==")
            say(result.summary(str(config.dataset)))
            if "timing" in result.metrics:
                rate = result.metrics["timing"]["train"]["samples_per_second"]
                say(f"training throughput: {rate:.2f} samples/s")
    if several and all(r.is_global_zero for r in results.values()):
        write_config(config, out / "config.yaml")
        summary = aggregate_seeds(results, str(config.dataset))
        path = out / "seeds_summary.json"
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        say(format_seed_summary(summary) + f"\nseed summary: {path}")
    say(f"finished in {time.perf_counter() - started:.0f} s")
    return results


__all__ = [
    "DATASETS",
    "DATASET_PRESETS",
    "SCRATCH_TEXT_MODEL",
    "ConfigError",
    "RunConfig",
    "TrainThroughput",
    "aggregate_seeds",
    "eval_only_config",
    "load_config_file",
    "locate_text_model",
    "parse_modalities",
    "prepare_demo_data",
    "resolve_config",
    "run_experiment",
]
