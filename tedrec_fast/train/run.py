"""End-to-end runs behind ``tedrec-fast train | evaluate | encode``: data, text embeddings, model, trainer.

The data, text and model packages are imported inside the functions that use them. ``tedrec-fast compare``
(:mod:`tedrec_fast.train.compare`) runs its models through the same functions: :func:`start_run`,
:func:`load_data`, :func:`load_text_embeddings`, :func:`build_recommender`, :func:`op_backends`,
:func:`record_result`.

**Short CPU schedule.** A TedRec training step at the paper's batch size (2048 sequences of 50 items,
d = 300, full softmax) costs about a TFLOP of forward + backward work, tens of seconds on a 2-core CPU.
So on a CPU, the settings of :data:`CPU_SCHEDULE` replace those the user did not set (by flag or config
file): a couple of short epochs that finish in minutes. The paper's schedule is
``tedrec-fast train --epochs 300 --batch-size 2048 --max-steps-per-epoch 0`` (best on a GPU).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from tedrec_fast.config import CPU_SCHEDULE, RunConfig, merge_settings
from tedrec_fast.parallel import to_catalog_parallel
from tedrec_fast.train.checkpoint import seed_everything
from tedrec_fast.train.distributed import DistContext, init_distributed
from tedrec_fast.train.evaluate import full_sort_evaluate
from tedrec_fast.train.report import (
    append_result_record,
    format_metrics_table,
    processor_name,
    results_path,
    source_commit,
)
from tedrec_fast.train.trainer import BEST_NAME, CATALOG_NEEDS_PROCESSES, Trainer, TrainResult, load_run_checkpoint

__all__ = ["CPU_SCHEDULE", "apply_cpu_schedule", "start_run", "load_data", "load_text_embeddings",
           "build_recommender", "op_backends", "train_run", "train_record", "record_result", "evaluate_run",
           "encode_run"]

_PAPER_HINT = "tedrec-fast train --epochs 300 --batch-size 2048 --max-steps-per-epoch 0"


def apply_cpu_schedule(cfg: RunConfig, explicit: Collection[str]) -> dict[str, Any]:
    """Set the :data:`CPU_SCHEDULE` values not in ``explicit`` on ``cfg.train``; return what was changed."""
    changed = {k: v for k, v in CPU_SCHEDULE.items() if k not in explicit}
    for key, value in changed.items():
        setattr(cfg.train, key, value)
    cfg.train.__post_init__()
    return changed


def start_run(cfg: RunConfig, explicit: Collection[str]) -> tuple[DistContext, torch.device, Callable[..., None]]:
    """Join the processes of ``torchrun`` (if any), pick the device, apply the CPU schedule there (and say so).

    Returns ``(dist, device, say)``: ``say`` prints on the first process only.
    """
    dist, device = init_distributed(cfg.device)
    say = print if dist.is_main else (lambda *a, **k: None)
    if device.type == "cpu":
        changed = apply_cpu_schedule(cfg, explicit)
        if changed:
            say(f"CPU short schedule: {changed} (the paper's schedule: {_PAPER_HINT})")
    return dist, device, say


def _text_cache(cfg: RunConfig) -> Path:
    return Path(cfg.data_dir).expanduser() / "text"


def load_data(cfg: RunConfig, dist: DistContext | None = None) -> Any:
    """Load ``cfg.dataset``: a directory path as is, else the prepared ``<data_dir>/<dataset>`` when present, else
    the preset prepared there now (:func:`tedrec_fast.data.find_or_prepare`).

    Under data parallelism rank 0 prepares first, the others wait and then load.
    """
    from tedrec_fast.data import find_or_prepare, load_dataset

    dist = dist or DistContext()
    if not dist.is_main:
        dist.barrier()
    directory = find_or_prepare(cfg.dataset, cfg.data_dir, raw=cfg.raw, max_seq_length=cfg.max_seq_length)
    if dist.is_main:
        dist.barrier()
    dataset = load_dataset(directory, max_seq_length=cfg.max_seq_length)
    for split in ("train", "valid", "test"):
        if getattr(dataset, split).target.shape[0] == 0:
            raise ValueError(f"{directory / f'{dataset.name}.{split}.inter'} holds no sequences: the {split} split "
                             "is empty (a header-only file?); prepare the dataset again")
    return dataset


def load_text_embeddings(cfg: RunConfig, dataset: Any, dist: DistContext | None = None,
                         models: Sequence[str] | None = None) -> torch.Tensor | None:
    """The ``(n_items, text_dim)`` float32 text table of ``dataset`` (encoded with ``cfg.encoder``, or from the
    cache) if any of ``models`` (default: ``cfg.model``) reads text, else ``None``. Rank 0 encodes first."""
    from tedrec_fast.models import needs_text_embeddings

    if not any(needs_text_embeddings(name) for name in (models or [cfg.model])):
        return None
    from tedrec_fast.text import encode_dataset_texts

    dist = dist or DistContext()
    if not dist.is_main:
        dist.barrier()
    table = encode_dataset_texts(list(dataset.item_text), dataset.name, cfg.encoder, _text_cache(cfg))
    if dist.is_main:
        dist.barrier()
    return torch.as_tensor(np.asarray(table), dtype=torch.float32)


def build_recommender(cfg: RunConfig, n_items: int, text_embeddings: Any, name: str | None = None) -> torch.nn.Module:
    """Model ``name`` (default: ``cfg.model``) by ``tedrec_fast.models.build_model`` with its settings and op
    backends from ``cfg`` (:meth:`~tedrec_fast.config.RunConfig.model_kwargs`); ``text_embeddings`` go to the
    models that read text."""
    from tedrec_fast.models import build_model, needs_text_embeddings

    name = cfg.model if name is None else name
    text = None
    if needs_text_embeddings(name):
        text = torch.as_tensor(np.asarray(text_embeddings), dtype=torch.float32)
    return build_model(name, n_items, cfg.max_seq_length, text, **cfg.model_kwargs(name))


def op_backends(model: torch.nn.Module, device: torch.device, batch: int, bf16: bool) -> dict[str, str]:
    """``op -> "chosen (requested 'auto')"`` for each op ``model`` runs on batches of ``batch`` sequences, as the
    model's modules answer (:func:`tedrec_fast.nn.model_backends`). ``spectral_fusion`` is always present: for
    a model without the fused layer it says ``none (no fusion layer)`` or names the ablation's torch module."""
    from tedrec_fast.nn import model_backends

    dtype = torch.bfloat16 if bf16 else torch.float32
    found = {op: f"{chosen} (requested {requested!r})"
             for op, (chosen, requested) in model_backends(model, batch, device, dtype).items()}
    if "spectral_fusion" not in found:
        fusion = getattr(model, "fusion", None)
        found["spectral_fusion"] = ("none (no fusion layer)" if fusion is None
                                    else f"torch ({type(fusion).__name__}: ablation, plain torch ops)")
    return dict(sorted(found.items(), key=lambda item: item[0] != "spectral_fusion"))


def _describe(backends: dict[str, str]) -> str:
    return " | ".join(f"{op} backend: {text}" for op, text in backends.items())


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def train_run(cfg: RunConfig, explicit: Collection[str] = ()) -> TrainResult:
    """Train ``cfg`` end to end: data, text embeddings, model, :class:`Trainer`, metrics table, result record.

    ``explicit`` names the settings the user chose (flags or config file); on a CPU the others of
    :data:`CPU_SCHEDULE` are replaced by the short schedule. Under ``torchrun`` every process calls this (data
    parallel, or catalog parallel with ``cfg.train.catalog_parallel``).
    """
    cfg.model_kwargs()  # an unknown setting fails before any data is loaded
    if cfg.train.catalog_parallel and cfg.backends.full_catalog_ce != "auto":
        raise ValueError(f"train_run: backends.full_catalog_ce={cfg.backends.full_catalog_ce!r} does not apply to "
                         "catalog_parallel, which computes the loss with its own sharded op (leave it auto)")
    source_commit()  # read now: the record names the code this process loaded, not the checkout at its end
    dist, device, say = start_run(cfg, explicit)
    if cfg.train.catalog_parallel and not dist.enabled:
        raise ValueError(f"train_run: {CATALOG_NEEDS_PROCESSES}")
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    started = time.perf_counter()
    dataset = load_data(cfg, dist)
    text = load_text_embeddings(cfg, dataset, dist)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    model = build_recommender(cfg, dataset.n_items, text)
    parallel = "catalog" if cfg.train.catalog_parallel else "data"
    per_process = cfg.train.batch_size if cfg.train.catalog_parallel else cfg.train.batch_size // dist.world_size
    backends = op_backends(model, device, per_process, cfg.train.bf16)
    if cfg.train.catalog_parallel:
        backends["full_catalog_ce"] = "sharded (catalog parallel, tedrec_fast.parallel)"
    say(f"dataset {dataset.name}: {dataset.n_users} users, {dataset.n_items - 1} items, "
        f"{dataset.train.target.shape[0]} training sequences (data + text: {time.perf_counter() - started:.1f}s)")
    say(f"model {cfg.model} | device {device} ({_device_name(device)}) x {dist.world_size} process(es)"
        + (f", {parallel} parallel" if dist.enabled else "") + f" | {_describe(backends)} | run dir {cfg.run_dir}")
    trainer = Trainer(model, dataset, cfg.train, device=device, output_dir=cfg.run_dir, resume=cfg.resume,
                      dist=dist, metadata=cfg.to_dict())
    result = trainer.fit()
    say(f"\nbest epoch {result.best_epoch} of {result.epochs_run} (training {result.seconds_per_epoch:.1f} s per "
        "epoch, evaluation excluded; "
        f"stopped by {result.stop_reason})")
    say(format_metrics_table({"valid": result.best_valid, "test": result.test}))
    path = record_result(cfg, dataset.name, cfg.model, device, dist, backends, result, text_used=text is not None)
    if path is not None:
        say(f"result recorded in {path}")
    return result


def train_record(cfg: RunConfig, dataset_name: str, model_name: str, device: torch.device, dist: DistContext,
                 backends: dict[str, str], result: TrainResult, text_used: bool) -> dict[str, Any]:
    """The ``"op": "train"`` result record of one finished run (bench/results schema, README).

    Besides the metrics it names where and from what it ran (``commit``, ``torch``, and on a CPU ``processor``
    and ``threads``), the schedule (``lr``, ``seed``, ``patience``, ``max_steps_per_epoch``, ``batch_size``) and
    the backends (:func:`op_backends`: ``fusion_backend`` is its ``spectral_fusion``, ``backends`` all of it).
    """
    host = {"processor": processor_name(), "threads": torch.get_num_threads()} if device.type == "cpu" else {}
    return {
        "op": "train", "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "commit": source_commit(), "torch": torch.__version__,
        "dataset": dataset_name, "model": model_name, "device": _device_name(device), **host,
        "world_size": dist.world_size,
        "parallel": ("catalog" if cfg.train.catalog_parallel else "data") if dist.enabled else None,
        "fusion_backend": backends["spectral_fusion"], "backends": dict(backends),
        "batch_size": cfg.train.batch_size, "lr": cfg.train.lr, "seed": cfg.train.seed,
        "patience": cfg.train.patience, "max_steps_per_epoch": cfg.train.max_steps_per_epoch, "bf16": cfg.train.bf16,
        "seconds_per_epoch": result.seconds_per_epoch, "epochs": result.epochs_run, "best_epoch": result.best_epoch,
        "stop_reason": result.stop_reason, "max_minutes": cfg.train.max_minutes,
        "encoder": cfg.encoder if text_used else None,
        **{f"test_{k}": v for k, v in result.test.items()},
    }


def record_result(cfg: RunConfig, dataset_name: str, model_name: str, device: torch.device, dist: DistContext,
                  backends: dict[str, str], result: TrainResult, text_used: bool) -> Path | None:
    """Append :func:`train_record` to ``cfg.results_dir`` on a GPU, or with ``cfg.record`` (first process only);
    returns the result file, or ``None`` when nothing was recorded."""
    if not dist.is_main or not (device.type == "cuda" or cfg.record):
        return None
    path = results_path(cfg.results_dir, _device_name(device))
    append_result_record(path, train_record(cfg, dataset_name, model_name, device, dist, backends, result,
                                            text_used=text_used))
    return path


def evaluate_run(checkpoint: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Evaluate a saved run (``best.pt``, ``last.pt`` or a run directory) on valid and test; prints a table.

    The run's settings come from the checkpoint; ``overrides`` (``device``, ``data_dir``, ``eval_batch_size``,
    ``mask_history``, ``backends``, ...) replace them (:func:`~tedrec_fast.config.merge_settings`). The
    per-process files of a catalog-parallel run are merged (:func:`~tedrec_fast.train.trainer.load_run_checkpoint`);
    under ``torchrun`` such a run is evaluated catalog
    parallel again (the full table only in host memory), else in one process.
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = path / BEST_NAME
    state = load_run_checkpoint(path)
    saved = RunConfig.from_dict(dict(state.get("metadata", {}))).to_dict()
    cfg = RunConfig.from_dict(merge_settings(saved, {k: v for k, v in (overrides or {}).items() if v is not None}))
    dist, device = init_distributed(cfg.device)
    dataset = load_data(cfg, dist)
    weights = state["model"]
    text = weights.get("text_embeddings")
    if text is None:
        text = load_text_embeddings(cfg, dataset, dist)
    model = build_recommender(cfg, dataset.n_items, text)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{path} holds weights that do not fit {cfg.model} with its saved settings: "
                         f"{str(err).strip().splitlines()[0][:160]}") from None
    users = dist  # the processes that split the users
    if cfg.train.catalog_parallel and dist.enabled:
        model = to_catalog_parallel(model)
        users = DistContext()  # every process scores every user, on its own items
    model.to(device)
    metrics = {}
    for name in ("valid", "test"):
        split = getattr(dataset, name)
        on_device = SimpleNamespace(**{a: getattr(split, a).to(device) for a in ("item_seq", "item_seq_len", "target")})
        metrics[name] = full_sort_evaluate(model, on_device, batch_size=cfg.train.eval_batch_size,
                                           mask_history=cfg.train.mask_history, bf16=cfg.train.bf16, dist=users,
                                           progress=name if cfg.train.progress and dist.is_main else None)
    if dist.is_main:
        print(f"{path} (epoch {state.get('epoch')}), {cfg.model} on {dataset.name}, device {device}")
        print(format_metrics_table(metrics))
    return metrics


def encode_run(cfg: RunConfig) -> np.ndarray:
    """Encode (or load from the cache) the item texts of ``cfg.dataset`` with ``cfg.encoder``."""
    from tedrec_fast.text import encode_dataset_texts

    dataset = load_data(cfg)
    table = encode_dataset_texts(list(dataset.item_text), dataset.name, cfg.encoder, _text_cache(cfg))
    print(f"{dataset.name}: text embeddings {table.shape} ({cfg.encoder}) cached under {_text_cache(cfg)}")
    return table
