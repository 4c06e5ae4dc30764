"""Run configuration: what to train (dataset, model, text encoder) and how (:class:`TrainConfig`).

A YAML config is a flat mapping whose keys are field names of :class:`RunConfig` or :class:`TrainConfig`
(the latter are routed to ``RunConfig.train``); unknown keys raise ``ValueError``. The packaged defaults
(``tedrec_fast/configs/default.yaml``) are the paper's training protocol (docs/DESIGN.md section 1).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tedrec_fast.paths import cache_dir

__all__ = ["TrainConfig", "RunConfig", "load_config", "read_config_file", "CONFIG_DIR", "default_data_dir",
           "CPU_SCHEDULE"]

#: directory of the packaged YAML configs
CONFIG_DIR = Path(__file__).parent / "configs"

#: TrainConfig settings that replace the unset ones when ``tedrec-fast train`` runs on a CPU: a time-budgeted
#: schedule on the fast training step (batch 128, Adam lr 2e-3, an evaluation on the valid split every 40 steps,
#: training stops starting new 40-step epochs after 9 minutes, the best valid epoch is tested). No test metric
#: entered the choice; the valid-split runs behind it are in bench/NOTES.md ("CPU schedule").
CPU_SCHEDULE: dict[str, Any] = {"epochs": 100, "batch_size": 128, "lr": 0.002, "max_steps_per_epoch": 40,
                                "max_minutes": 9.0}


def default_data_dir() -> str:
    """Prepared datasets and text embeddings go under the cache: :func:`tedrec_fast.paths.cache_dir`."""
    return str(cache_dir())


def _check_positive_int(owner: str, name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {value}")


def _check_type(owner: str, name: str, value: object, types: tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in types:
        raise TypeError(f"{owner}: {name} must be {' or '.join(t.__name__ for t in types)}, got bool")
    if not isinstance(value, types):
        raise TypeError(f"{owner}: {name} must be {' or '.join(t.__name__ for t in types)}, "
                        f"got {type(value).__name__}")


@dataclass
class TrainConfig:
    """How to train (defaults: the paper's protocol, docs/DESIGN.md section 1).

    Attributes:
        epochs: maximum number of epochs.
        batch_size: global batch size (split across processes under ``torchrun``, unless ``catalog_parallel``).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        bf16: run forward and loss under bfloat16 autocast.
        seed: seeds the global torch RNGs and the generator that shuffles the training set.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (bit-identical reruns and resumes).
        patience: stop when valid NDCG@10 has not improved for this many epochs.
        eval_batch_size: users scored per chunk in full-sort evaluation.
        mask_history: give the items of the input sequence score -inf in evaluation (RecBole does not).
        log_every: steps between progress-bar loss updates (the only per-step host synchronisation).
        max_steps_per_epoch: cap on optimizer steps per epoch (``None``: the whole training set).
        max_minutes: wall-clock budget of :meth:`~tedrec_fast.train.Trainer.fit` in this process: no epoch
            starts once it is spent (the epoch running then finishes); the best weights are tested as after
            early stopping and the result says ``stop_reason == "time budget"`` (``None``: no budget).
        progress: show tqdm progress bars.
        catalog_parallel: under ``torchrun``, shard the item table (and its optimiser state) across the
            processes instead of the batch: every process runs the whole batch and the softmax normaliser is
            combined with collectives (:mod:`tedrec_fast.parallel.models`; each step then also waits on the
            host for the loss's target check); needs two or more processes.
    """

    epochs: int = 300
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = None
    bf16: bool = False
    seed: int = 2020
    deterministic: bool = False
    patience: int = 10
    eval_batch_size: int = 1024
    mask_history: bool = False
    log_every: int = 10
    max_steps_per_epoch: int | None = None
    max_minutes: float | None = None
    progress: bool = True
    catalog_parallel: bool = False

    def __post_init__(self) -> None:
        owner = "TrainConfig"
        for name in ("epochs", "batch_size", "patience", "eval_batch_size", "log_every"):
            _check_positive_int(owner, name, getattr(self, name))
        _check_positive_int(owner, "max_steps_per_epoch", self.max_steps_per_epoch, allow_none=True)
        _check_type(owner, "seed", self.seed, (int,))
        for name in ("lr", "weight_decay"):
            _check_type(owner, name, getattr(self, name), (int, float))
        if not self.lr > 0:
            raise ValueError(f"{owner}: lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"{owner}: weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_minutes is not None:
            _check_type(owner, "max_minutes", self.max_minutes, (int, float))
            if not self.max_minutes > 0:
                raise ValueError(f"{owner}: max_minutes must be > 0 or None, got {self.max_minutes}")
        if self.grad_clip is not None:
            _check_type(owner, "grad_clip", self.grad_clip, (int, float))
            if not self.grad_clip > 0:
                raise ValueError(f"{owner}: grad_clip must be > 0 or None, got {self.grad_clip}")
        for name in ("bf16", "deterministic", "mask_history", "progress", "catalog_parallel"):
            _check_type(owner, name, getattr(self, name), (bool,))


@dataclass
class RunConfig:
    """What to train, where, and with which :class:`TrainConfig`.

    Attributes:
        dataset: a source known to ``tedrec_fast.data.prepare_dataset`` (e.g. ``"ml-100k"``), or the path of an
            already prepared dataset directory.
        raw: the source's raw file or directory (``None``: downloaded by ``prepare_dataset``).
        model: ``tedrec``, ``tedrec-wo-mm``, ``tedrec-wo-ag``, ``tedrec-wo-if``, ``tedrec-wo-tf`` or ``sasrec``.
        model_args: keyword overrides for ``tedrec_fast.models.build_model``.
        encoder: text encoder for ``tedrec_fast.text.encode_dataset_texts``.
        fusion_backend: spectral-fusion backend of TedRec models (``auto``, ``triton``, ``torch``).
        max_seq_length: history length ``n``.
        data_dir: cache for prepared datasets (``<data_dir>/datasets``) and text embeddings (``<data_dir>/text``).
        device: ``auto`` (CUDA if available, else CPU), or a torch device string.
        output_dir: run directory (checkpoints, ``log.jsonl``); ``None``: ``runs/<dataset>-<model>``.
        resume: continue the run in ``output_dir`` from its last checkpoint.
        record: append a result record to ``results_dir`` even on CPU (always done on GPU).
        results_dir: where result records go.
        train: the training options.
    """

    dataset: str = "ml-100k"
    raw: str | None = None
    model: str = "tedrec"
    model_args: dict[str, Any] = field(default_factory=dict)
    encoder: str = "minilm"
    fusion_backend: str = "auto"
    max_seq_length: int = 50
    data_dir: str = field(default_factory=default_data_dir)
    device: str = "auto"
    output_dir: str | None = None
    resume: bool = False
    record: bool = False
    results_dir: str = "bench/results"
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        owner = "RunConfig"
        for name in ("dataset", "model", "encoder", "fusion_backend", "data_dir", "device", "results_dir"):
            _check_type(owner, name, getattr(self, name), (str,))
        _check_type(owner, "model_args", self.model_args, (dict,))
        _check_positive_int(owner, "max_seq_length", self.max_seq_length)
        for name in ("raw", "output_dir"):
            if getattr(self, name) is not None:
                _check_type(owner, name, getattr(self, name), (str,))
        for name in ("resume", "record"):
            _check_type(owner, name, getattr(self, name), (bool,))
        _check_type(owner, "train", self.train, (TrainConfig,))

    @property
    def run_dir(self) -> Path:
        """The run directory (``output_dir`` or ``runs/<dataset>-<model>``)."""
        return Path(self.output_dir) if self.output_dir else Path("runs") / f"{Path(self.dataset).stem}-{self.model}"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from a flat mapping of :class:`RunConfig` and :class:`TrainConfig` field names."""
        if not isinstance(values, dict):
            raise TypeError(f"RunConfig.from_dict: values must be a mapping, got {type(values).__name__}")
        run_fields = {f.name for f in dataclasses.fields(cls)} - {"train"}
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(values) - run_fields - train_fields)
        if unknown:
            raise ValueError(f"RunConfig: unknown config keys {unknown}")
        train = TrainConfig(**{k: v for k, v in values.items() if k in train_fields})
        return cls(train=train, **{k: v for k, v in values.items() if k in run_fields})

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping :meth:`from_dict` reads (YAML- and JSON-serialisable)."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "train"}
        flat.update(dataclasses.asdict(self.train))
        return flat


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The flat mapping in the YAML file ``path`` (an empty file is an empty mapping).

    Raises:
        ValueError: if the file does not hold a mapping.
    """
    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"config file {path} must hold a YAML mapping, got {type(loaded).__name__}")
    return loaded


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read the packaged defaults, then the YAML file ``path`` (if any), then ``overrides`` (``None`` values skip).

    Raises:
        ValueError: for unknown keys or a YAML file that is not a mapping.
    """
    values = read_config_file(CONFIG_DIR / "default.yaml")
    if path is not None:
        values.update(read_config_file(path))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return RunConfig.from_dict(values)
