"""The trainer: device-resident data, shuffled on the device, no per-step host synchronisation.

The three splits are moved to the device once as index tensors. Each epoch draws one permutation with
``torch.randperm`` on the device (a seeded ``torch.Generator``), and every step gathers its batch with
that permutation: no DataLoader, no collate, no per-step host-to-device copy. The loss is accumulated on
the device and read back only every ``log_every`` steps (for the progress bar) and at the end of the epoch.

Under ``torchrun`` (see :mod:`tedrec_fast.train.distributed`) the model is wrapped in
``DistributedDataParallel``; every process draws the same permutation and takes a contiguous, disjoint
shard of each global batch, its loss scaled by ``shard_size * world_size / batch_size`` so that the
averaged gradient equals the single-process gradient of the whole global batch. A final global batch
smaller than the number of processes is dropped. Evaluation metrics are all-reduced; rank 0 logs and
writes checkpoints.

With ``catalog_parallel`` the processes split the item table instead. The trainer holds no branch for it: what
differs (the model's form, the loss module, gradient clipping, who splits batches and users, checkpoint files,
resuming) is asked of one :class:`~tedrec_fast.train.strategy.ParallelStrategy` (``Replicated`` or
``CatalogSharded``, :mod:`tedrec_fast.train.strategy`); :func:`load_run_checkpoint` reads the checkpoint
of either.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from tedrec_fast.config import TrainConfig
from tedrec_fast.data.compact import CompactSplit, split_rows, split_size
from tedrec_fast.safe_files import remove_stale_temporaries
from tedrec_fast.train.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_atomic, seed_everything
from tedrec_fast.train.distributed import DistContext, shard_bounds
from tedrec_fast.train.evaluate import SplitLike, full_sort_evaluate
from tedrec_fast.train.lock import RunLock
from tedrec_fast.train.report import JsonlLog
from tedrec_fast.train.strategy import (
    CATALOG_NEEDS_PROCESSES,
    load_sharded_checkpoint,
    previous_file,
    strategy_for,
)

__all__ = ["Trainer", "TrainResult", "DatasetLike", "TrainingDiverged", "SELECTION_METRIC", "CHECKPOINT_NAME",
           "BEST_NAME", "LOG_NAME", "RESUMABLE_SETTINGS", "CATALOG_NEEDS_PROCESSES", "load_run_checkpoint"]

#: early stopping and best-checkpoint selection use this valid metric
SELECTION_METRIC = "ndcg@10"
#: files in the run directory
CHECKPOINT_NAME, BEST_NAME, LOG_NAME = "last.pt", "best.pt", "log.jsonl"
#: settings a resumed run may change (all others must equal the saved run's: lr, seed, batch_size, model, ...)
RESUMABLE_SETTINGS = frozenset({"epochs", "patience", "max_minutes", "progress", "log_every", "eval_batch_size",
                                "resume", "record", "results_dir", "output_dir", "data_dir", "raw", "device"})
def load_run_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint the :class:`Trainer` wrote: ``path`` itself or, when ``path`` is absent and a catalog-parallel
    run wrote its per-process files in its place (``best.rank0-of-2.pt``, ...), those files merged
    (:func:`~tedrec_fast.train.strategy.load_sharded_checkpoint`: single-process ``model`` and ``best_model``, the
    other entries of rank 0's file, no optimiser state).

    Raises:
        ValueError: no such checkpoint, or per-process files that are incomplete or of different epochs.
    """
    path = Path(path)
    return load_checkpoint(path) if path.is_file() else load_sharded_checkpoint(path)


class TrainingDiverged(ValueError):
    """The training loss or the weights became non-finite (NaN or inf): the run stops, that epoch is not saved."""


class DatasetLike(Protocol):
    """The splits the trainer reads (``tedrec_fast.data.SequentialDataset`` fits)."""

    train: SplitLike
    valid: SplitLike
    test: SplitLike


@dataclass(frozen=True)
class _Split:
    item_seq: torch.Tensor
    item_seq_len: torch.Tensor
    target: torch.Tensor


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        best_epoch: the epoch whose weights were restored for the test (1-based).
        epochs_run: epochs completed (including those of an interrupted run that was resumed).
        stopped_early: whether patience ran out before ``epochs``.
        stop_reason: ``"epochs"`` (all run), ``"patience"`` (early stopping) or ``"time budget"``
            (``TrainConfig.max_minutes`` spent first: the model may not have converged).
        best_valid: valid metrics of the best epoch.
        test: test metrics of the restored best weights.
        seconds_per_epoch: mean wall-clock seconds of the training part of an epoch.
    """

    best_epoch: int
    epochs_run: int
    stopped_early: bool
    stop_reason: str
    best_valid: dict[str, float]
    test: dict[str, float]
    seconds_per_epoch: float


class _LossModule(nn.Module):
    """Routes ``calculate_loss`` through ``forward`` so DistributedDataParallel sees it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.model.calculate_loss(item_seq, item_seq_len, target)


def _to_device(split: SplitLike | CompactSplit, name: str, device: torch.device) -> _Split | CompactSplit:
    if isinstance(split, CompactSplit):  # int32 sequences on the device, each batch's rows gathered there
        return split.to(device)
    for attr in ("item_seq", "item_seq_len", "target"):
        if not isinstance(getattr(split, attr, None), torch.Tensor):
            raise TypeError(f"Trainer: dataset.{name}.{attr} must be a torch.Tensor")
    if split.item_seq.dim() != 2 or split.item_seq_len.shape != split.target.shape != split.item_seq.shape[:1]:
        raise ValueError(f"Trainer: dataset.{name} must hold item_seq (N, L), item_seq_len (N,) and target (N,)")
    if split.target.shape[0] == 0:
        raise ValueError(f"Trainer: dataset.{name} is empty (0 sequences): nothing to train on or evaluate")
    return _Split(*(getattr(split, a).to(device, torch.long) for a in ("item_seq", "item_seq_len", "target")))


class Trainer:
    """Trains a sequential recommender with early stopping on valid NDCG@10, then tests the best weights.

    Args:
        model: a :class:`~tedrec_fast.models.base.SequentialRecommender`.
        dataset: object with ``train``, ``valid`` and ``test`` splits (``item_seq``, ``item_seq_len``, ``target``).
        config: training options (:class:`~tedrec_fast.config.TrainConfig`).
        device: where to train (default: the model's device).
        output_dir: run directory for ``last.pt`` (resumable state), ``best.pt`` (best weights) and
            ``log.jsonl`` (one record per epoch); ``None`` writes nothing.
        resume: continue from ``output_dir/last.pt`` if it exists (else start fresh). In deterministic mode a
            resumed run ends bit-identical to an uninterrupted one. Under data parallelism every process
            restores rank 0's RNG states; under catalog parallelism each process its own file.
        dist: the process group (default: one process).
        metadata: JSON-like mapping stored in the checkpoints (``tedrec-fast evaluate`` reads it).

    The constructor seeds the global torch RNGs and the shuffling generator with ``config.seed`` (and sets
    deterministic mode as configured), so seed before building the model too for reproducible inits.
    The constructor puts ``model`` in its strategy's form on ``device`` (:attr:`strategy`,
    :meth:`~tedrec_fast.train.strategy.ParallelStrategy.place`): with ``config.catalog_parallel`` it converts
    ``model`` in place (:func:`~tedrec_fast.parallel.to_catalog_parallel`, unless already converted) and checks
    that its replicated weights agree across processes.

    Raises:
        ValueError: ``catalog_parallel`` with one process (:data:`CATALOG_NEEDS_PROCESSES`); see also
            :func:`~tedrec_fast.parallel.to_catalog_parallel`.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: DatasetLike,
        config: TrainConfig | None = None,
        *,
        device: str | torch.device | None = None,
        output_dir: str | Path | None = None,
        resume: bool = False,
        dist: DistContext | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Trainer: model must be an nn.Module, got {type(model).__name__}")
        self.config = config if config is not None else TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig, got {type(self.config).__name__}")
        if resume and output_dir is None:
            raise ValueError("Trainer: resume=True needs an output_dir")
        self.dist = dist or DistContext()
        #: how the processes share the work (:mod:`tedrec_fast.train.strategy`)
        self.strategy = strategy_for(self.config.catalog_parallel, self.dist)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model = self.strategy.place(model, self.device)
        seed_everything(self.config.seed, self.config.deterministic)
        self.splits = {name: _to_device(getattr(dataset, name), name, self.device)
                       for name in ("train", "valid", "test")}
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.config.seed)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.loss_module = self.strategy.loss_module(_LossModule(model), self.device)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.metadata = dict(metadata or {})
        self.log = JsonlLog(self.output_dir / LOG_NAME) if self.output_dir and self.dist.is_main else None
        self.lock = RunLock(self.output_dir).acquire() if self.log is not None else None
        if self.output_dir is not None and self.strategy.writes_checkpoints:
            last = self._path(CHECKPOINT_NAME)
            for target in (last, previous_file(last), self._path(BEST_NAME), self.output_dir / LOG_NAME):
                remove_stale_temporaries(target)
        #: one record per completed epoch (also kept in the last checkpoint)
        self.records: list[dict[str, Any]] = []
        self.epoch = 0
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_valid: dict[str, float] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.train_seconds: list[float] = []
        try:
            state = self._resume_state() if resume else None
            if state is not None:
                self._resume(state)
            elif self.log is not None:
                self.log.write([])
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the run directory's lock (done by :meth:`fit` when it returns or fails)."""
        if getattr(self, "lock", None) is not None:
            self.lock.release()

    # ------------------------------------------------------------------ training
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.config.bf16 else nullcontext()

    def _steps_per_epoch(self, n: int) -> int:
        batch = self.config.batch_size
        steps = n // batch + (1 if n % batch >= self.strategy.data.world_size else 0)
        if self.config.max_steps_per_epoch is not None:
            steps = min(steps, self.config.max_steps_per_epoch)
        return steps

    def train_epoch(self, epoch: int) -> float:
        """One pass over the (shuffled) training set; returns the mean training loss over all processes."""
        cfg, split, data = self.config, self.splits["train"], self.strategy.data
        n = split_size(split)
        perm = torch.randperm(n, generator=self.generator, device=self.device)
        steps = self._steps_per_epoch(n)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        self.loss_module.train()
        bar = tqdm(total=steps, desc=f"epoch {epoch}", unit="step", leave=False,
                   disable=not (cfg.progress and self.dist.is_main))
        start = time.perf_counter()
        for step in range(steps):
            global_idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            global_size = global_idx.shape[0]
            lo, hi = shard_bounds(global_size, data.rank, data.world_size)
            idx = global_idx[lo:hi]
            with self._autocast():
                loss = self.loss_module(*split_rows(split, idx))
            scale = (hi - lo) * data.world_size / global_size
            self.optimizer.zero_grad(set_to_none=True)
            (loss * scale if scale != 1 else loss).backward()
            if cfg.grad_clip is not None:
                self.strategy.clip_grad_norm_(self.model, cfg.grad_clip)
            self.optimizer.step()
            loss_sum += loss.detach().double() * (hi - lo)
            seen += hi - lo
            bar.update(1)
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                running = loss_sum.item() / max(seen, 1)
                flag = torch.tensor([0.0 if math.isfinite(running) else 1.0], device=self.device)
                if data.all_reduce_max(flag).item():  # every process stops together
                    bar.close()
                    value = running if not math.isfinite(running) else "non-finite on another process"
                    self._diverged(epoch, f"the training loss is {value} by step {step + 1} of {steps}")
                rate = (step + 1) * cfg.batch_size / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{running:.4f}", seq_per_s=f"{rate:.0f}")
        bar.close()
        totals = data.all_reduce_sum(torch.stack([loss_sum, loss_sum.new_tensor(float(seen))]))
        total_loss, total_seen = totals.tolist()
        mean = total_loss / total_seen if total_seen else math.nan
        if not math.isfinite(mean):
            self._diverged(epoch, f"the mean training loss is {mean}")
        return mean

    def _check_weights(self, epoch: int) -> None:
        """Raise :class:`TrainingDiverged` if any process's weights hold NaN or inf."""
        bad = [name for name, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if self.dist.all_reduce_max(torch.tensor([float(bool(bad))], device=self.device)).item():
            self._diverged(epoch, "the weights hold NaN or inf after the epoch's last step"
                           + (f" ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})" if bad else ""))

    def _diverged(self, epoch: int, what: str) -> None:
        saved = (f"{self._path(CHECKPOINT_NAME)} holds epoch {self.epoch}" if self.output_dir is not None and self.epoch
                 else "no epoch was saved")
        raise TrainingDiverged(f"training diverged in epoch {epoch}: {what}; stopped without saving this epoch "
                               f"({saved}); lower the learning rate (lr={self.config.lr:g}) or set grad_clip")

    def evaluate(self, split: str) -> dict[str, float]:
        """Full-sort metrics of the current weights on ``"valid"`` or ``"test"`` (with a progress bar)."""
        if split not in ("valid", "test"):
            raise ValueError(f"Trainer.evaluate: split must be 'valid' or 'test', got {split!r}")
        cfg = self.config
        desc = f"epoch {self.epoch + 1} valid" if split == "valid" else split
        progress = desc if cfg.progress and self.dist.is_main else None
        return full_sort_evaluate(self.model, self.splits[split], batch_size=cfg.eval_batch_size,
                                  mask_history=cfg.mask_history, bf16=cfg.bf16, dist=self.strategy.data,
                                  progress=progress)

    def fit(self) -> TrainResult:
        """Train until ``epochs`` or early stopping, restore the best weights, evaluate them on the test split.

        Raises:
            TrainingDiverged: the loss or the weights became non-finite (the run directory keeps the last good
                epoch). The run directory's lock is released on return and on any error.
        """
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> TrainResult:
        cfg = self.config
        started = time.perf_counter()
        out_of_time = False
        while self.epoch < cfg.epochs and self.bad_epochs < cfg.patience and not out_of_time:
            epoch = self.epoch + 1
            start = time.perf_counter()
            loss = self.train_epoch(epoch)
            self._check_weights(epoch)
            train_seconds = time.perf_counter() - start
            valid = self.evaluate("valid")
            valid_seconds = time.perf_counter() - start - train_seconds
            self.epoch = epoch
            self.train_seconds.append(train_seconds)
            improved = valid[SELECTION_METRIC] > self.best_metric
            if improved:
                self.best_metric, self.best_epoch, self.bad_epochs = valid[SELECTION_METRIC], epoch, 0
                self.best_valid = dict(valid)
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                self.bad_epochs += 1
            self.records.append({"epoch": epoch, "train_loss": loss, **{f"valid_{k}": v for k, v in valid.items()},
                                 "train_seconds": train_seconds, "valid_seconds": valid_seconds,
                                 "seconds": train_seconds + valid_seconds})
            self._save(improved)
            if self.dist.is_main and cfg.progress:
                metrics = "  ".join(f"{k} {v:.4f}" for k, v in valid.items())
                tqdm.write(f"epoch {epoch:3d}  loss {loss:.4f}  valid {metrics}  (train {train_seconds:.1f} s, "
                           f"valid {valid_seconds:.1f} s)" + ("  *" if improved else ""))
            out_of_time = self._budget_spent(started)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        test = self.evaluate("test")
        stopped_early = self.bad_epochs >= cfg.patience and self.epoch < cfg.epochs
        return TrainResult(
            best_epoch=self.best_epoch,
            epochs_run=self.epoch,
            stopped_early=stopped_early,
            stop_reason="patience" if stopped_early else "epochs" if self.epoch >= cfg.epochs else "time budget",
            best_valid=dict(self.best_valid),
            test=test,
            seconds_per_epoch=sum(self.train_seconds) / len(self.train_seconds) if self.train_seconds else math.nan,
        )

    def _budget_spent(self, started: float) -> bool:
        """Whether ``max_minutes`` have passed since ``started``; every process gets the slowest one's answer."""
        if self.config.max_minutes is None:
            return False
        minutes = torch.tensor([(time.perf_counter() - started) / 60], dtype=torch.float64, device=self.device)
        return bool(self.dist.all_reduce_max(minutes).item() >= self.config.max_minutes)

    # ------------------------------------------------------------------ checkpoints
    def _path(self, name: str) -> Path:
        """Where this process writes checkpoint ``name`` (its own file under catalog parallelism)."""
        return self.output_dir / self.strategy.file_name(name)

    def _common(self) -> dict[str, Any]:
        """What both checkpoint files carry besides weights: the run's settings (and the shard layout)."""
        return {"metadata": self.metadata, "train_config": asdict(self.config),
                **self.strategy.checkpoint_entries(self.model)}

    def _save_best(self) -> None:
        save_atomic({"model": self.best_state, "epoch": self.best_epoch, "valid": self.best_valid, **self._common()},
                    self._path(BEST_NAME))

    def _save(self, improved: bool) -> None:
        """``last.pt`` (everything a resume needs, the epoch records included), then ``best.pt`` if improved, then
        the log rewritten from the records: a kill between any two leaves a state ``--resume`` repairs."""
        if self.output_dir is None or not self.strategy.writes_checkpoints:
            return
        self.strategy.save_last(
            {
                "epoch": self.epoch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(self.device, self.generator),
                "best_metric": self.best_metric,
                "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
                "best_valid": self.best_valid,
                "best_model": self.best_state,
                "train_seconds": self.train_seconds,
                "records": self.records,
                **self._common(),
            },
            self.output_dir,
            CHECKPOINT_NAME,
        )
        if improved:
            self._save_best()
        if self.log is not None:
            self.log.write(self.records)

    def _resume_state(self) -> dict[str, Any] | None:
        """This process's last checkpoint, or ``None`` to start fresh; raises if the processes disagree or only
        checkpoints of another parallel layout exist."""
        return self.strategy.load_last(self.output_dir, CHECKPOINT_NAME, self.device)

    def _check_settings(self, state: dict[str, Any], path: Path) -> None:
        """Refuse to resume ``state`` with settings other than the saved run's (:data:`RESUMABLE_SETTINGS` aside)."""
        saved = {**state.get("metadata", {}), **state.get("train_config", {})}
        now = {**self.metadata, **asdict(self.config)}
        differ = [f"{key}: saved {saved[key]!r}, now {now[key]!r}" for key in sorted(saved.keys() & now.keys())
                  if key not in RESUMABLE_SETTINGS and saved[key] != now[key]]
        if differ:
            raise ValueError(f"cannot resume from {path}: the run was started with other settings "
                             f"({'; '.join(differ)}); resume with the saved settings or choose another output "
                             "directory")

    def _resume(self, state: dict[str, Any]) -> None:
        path = self._path(CHECKPOINT_NAME)
        self._check_settings(state, path)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"cannot resume from {path}: it holds the weights of another model than "
                             f"{type(self.model).__name__} with these settings ({first[:160]})") from None
        restore_rng_state(state["rng"], self.device, self.generator)
        self.epoch = state["epoch"]
        self.best_metric = state["best_metric"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.best_valid = dict(state["best_valid"])
        best = state.get("best_model")
        self.best_state = {k: v.to(self.device) for k, v in best.items()} if best is not None else None
        self.train_seconds = list(state["train_seconds"])
        self.records = [dict(r) for r in state.get("records", [])]
        if self.best_state is not None and self.strategy.writes_checkpoints:
            self._save_best()  # a kill may have left best.pt of an epoch after this checkpoint's
        if self.log is not None:
            self.log.write(self.records)
        if self.dist.is_main and self.config.progress:
            tqdm.write(f"resumed from {path} after epoch {self.epoch}")
