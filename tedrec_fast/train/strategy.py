"""How the processes of a run share the work: one strategy object that the trainer and the evaluation call.

* :class:`Replicated`: every process holds the whole model. Under ``torchrun`` the loss module is wrapped in
  ``DistributedDataParallel``, the processes split each batch and the evaluated users, and rank 0 writes the
  checkpoints; in one process this is plain single-process training.
* :class:`CatalogSharded` (``TrainConfig.catalog_parallel``): the item table is split by rows
  (:func:`~tedrec_fast.parallel.to_catalog_parallel`); every process runs every batch and every user with the
  same random streams, gradient clipping takes the norm over all shards, evaluation combines the ranks of each
  user's target across processes, and each process writes its own checkpoint files (``last.rank{r}-of-{W}.pt``,
  ``best.rank{r}-of-{W}.pt``; the previous ``last`` kept as ``.prev``, so that a kill between the processes'
  saves leaves an epoch they all hold). :func:`load_sharded_checkpoint` merges such files into a
  single-process checkpoint.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tedrec_fast.parallel import (
    CatalogShard,
    catalog_shard_of,
    check_replicated,
    merge_catalog_state_dicts,
    sharded_state_keys,
    to_catalog_parallel,
)
from tedrec_fast.parallel.models import clip_grad_norm_ as clip_sharded_grad_norm_
from tedrec_fast.train.checkpoint import load_checkpoint, save_atomic
from tedrec_fast.train.distributed import DistContext

__all__ = ["ParallelStrategy", "Replicated", "CatalogSharded", "strategy_for", "strategy_of", "shard_file_name",
           "previous_file", "load_sharded_checkpoint", "CATALOG_NEEDS_PROCESSES"]

#: the error of ``catalog_parallel`` in a single process
CATALOG_NEEDS_PROCESSES = ("catalog_parallel shards the item table across processes: run under torchrun with "
                           "--nproc_per_node 2 or more")


def shard_file_name(name: str, rank: int | str, world_size: int | str) -> str:
    """``"last.pt"`` -> ``"last.rank0-of-2.pt"``: the file process ``rank`` of a catalog-parallel run writes."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.rank{rank}-of-{world_size}{dot}{suffix}"


def previous_file(path: Path) -> Path:
    """Where a catalog-parallel process keeps its previous ``last`` checkpoint (``last.rank0-of-2.pt.prev``)."""
    return path.with_name(path.name + ".prev")


class ParallelStrategy(ABC):
    """What differs between the ways processes share a run; ``dist`` holds all the run's processes."""

    def __init__(self, dist: DistContext) -> None:
        self.dist = dist

    # ------------------------------------------------------------------ model and steps
    @property
    @abstractmethod
    def data(self) -> DistContext:
        """The processes that split each batch and the evaluated users."""

    @abstractmethod
    def place(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` (built alike on every process) in this strategy's form on ``device``, before the optimiser
        is built; raises if the processes' models disagree."""

    @abstractmethod
    def loss_module(self, module: nn.Module, device: torch.device) -> nn.Module:
        """The module whose ``forward`` gives this process's loss (``module``, or it wrapped for gradients)."""

    @abstractmethod
    def clip_grad_norm_(self, model: nn.Module, max_norm: float) -> None:
        """Scale the gradients of ``model`` so that their global norm is at most ``max_norm``."""

    # ------------------------------------------------------------------ evaluation
    @abstractmethod
    def item_shard(self, model: nn.Module) -> CatalogShard:
        """The items this process scores for every user and the processes that hold the others."""

    # ------------------------------------------------------------------ checkpoints
    @property
    @abstractmethod
    def writes_checkpoints(self) -> bool:
        """Whether this process writes checkpoint files."""

    @abstractmethod
    def file_name(self, name: str) -> str:
        """The file this process writes for checkpoint ``name`` (``"last.pt"``, ``"best.pt"``)."""

    def checkpoint_entries(self, model: nn.Module) -> dict[str, Any]:
        """Entries every checkpoint of this process carries besides the run's (the shard layout)."""
        return {}

    def save_last(self, state: dict[str, Any], directory: Path, name: str) -> None:
        """Write the resumable checkpoint ``state`` as ``name`` (:meth:`file_name`) in ``directory``."""
        save_atomic(state, directory / self.file_name(name))

    @abstractmethod
    def _load_last(self, directory: Path, name: str, device: torch.device) -> dict[str, Any] | None:
        """This process's checkpoint ``name`` to resume from, ``None`` when there is none."""

    def load_last(self, directory: Path, name: str, device: torch.device) -> dict[str, Any] | None:
        """The checkpoint ``name`` (:meth:`file_name`) in ``directory`` to resume from, or ``None`` to start fresh
        (``device``: where this process's tensors and collectives live).

        Raises:
            ValueError: none of this layout, but checkpoints of another parallel layout in ``directory``.
        """
        state = self._load_last(directory, name, device)
        if state is None:
            others = [p.name for p in directory.glob(shard_file_name(name, "*", "*"))]
            others += [name] if (directory / name).is_file() else []
            if others:
                raise ValueError(f"Trainer: cannot resume: {directory} holds {sorted(others)}, written with "
                                 f"another parallel layout than this run's {self.file_name(name)} (catalog_parallel "
                                 "and the number of processes must match)")
        return state


class Replicated(ParallelStrategy):
    """Every process holds the whole model (data parallel across processes; one process: no parallelism)."""

    @property
    def data(self) -> DistContext:
        return self.dist

    def place(self, model: nn.Module, device: torch.device) -> nn.Module:
        return model.to(device)

    def loss_module(self, module: nn.Module, device: torch.device) -> nn.Module:
        if not self.dist.enabled:
            return module
        return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)

    def clip_grad_norm_(self, model: nn.Module, max_norm: float) -> None:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def item_shard(self, model: nn.Module) -> CatalogShard:
        return CatalogShard(0, model.n_items, model.n_items, 0, 1)

    @property
    def writes_checkpoints(self) -> bool:
        return self.dist.is_main

    def file_name(self, name: str) -> str:
        return name

    def _load_last(self, directory: Path, name: str, device: torch.device) -> dict[str, Any] | None:
        path = directory / name
        return load_checkpoint(path) if path.is_file() else None


class CatalogSharded(ParallelStrategy):
    """The item table split by rows across the processes of ``dist`` (:mod:`tedrec_fast.parallel.models`)."""

    @property
    def data(self) -> DistContext:
        return DistContext()

    def place(self, model: nn.Module, device: torch.device) -> nn.Module:
        """Convert ``model`` in place (unless already converted for these processes), move it to ``device`` and
        check that its replicated weights agree across processes (RuntimeError otherwise)."""
        if catalog_shard_of(model) is None:
            model = to_catalog_parallel(model)
        shard = catalog_shard_of(model)
        if (shard.rank, shard.world_size) != (self.dist.rank, self.dist.world_size):
            raise ValueError(f"Trainer: the model is sharded as rank {shard.rank} of {shard.world_size}, but dist is "
                             f"rank {self.dist.rank} of {self.dist.world_size}")
        model = model.to(device)
        check_replicated(model)
        return model

    def loss_module(self, module: nn.Module, device: torch.device) -> nn.Module:
        return module

    def clip_grad_norm_(self, model: nn.Module, max_norm: float) -> None:
        clip_sharded_grad_norm_(model, max_norm)

    def item_shard(self, model: nn.Module) -> CatalogShard:
        shard = catalog_shard_of(model)
        if shard is None:
            raise TypeError(f"CatalogSharded: {type(model).__name__} is not catalog-parallel")
        return shard

    @property
    def writes_checkpoints(self) -> bool:
        return True

    def file_name(self, name: str) -> str:
        return shard_file_name(name, self.dist.rank, self.dist.world_size)

    def checkpoint_entries(self, model: nn.Module) -> dict[str, Any]:
        shard = self.item_shard(model)
        return {"catalog": {"rank": shard.rank, "world_size": shard.world_size, "start": shard.start,
                            "stop": shard.stop, "n_items": shard.n_items,
                            "sharded_keys": list(sharded_state_keys(model))}}

    def save_last(self, state: dict[str, Any], directory: Path, name: str) -> None:
        """Keep the previous file as ``.prev`` first: the processes save one after another, and a kill between
        their saves must leave an epoch every process holds."""
        path = directory / self.file_name(name)
        if path.is_file():
            os.replace(path, previous_file(path))
        save_atomic(state, path)

    def _load_last(self, directory: Path, name: str, device: torch.device) -> dict[str, Any] | None:
        """The newest epoch whose checkpoint every process holds (its last file, or the previous one when a kill
        stopped the processes' saves part way), or ``None`` when none has any."""
        path = directory / self.file_name(name)
        candidates = [p for p in (path, previous_file(path)) if p.is_file()]
        states = [load_checkpoint(candidates[0])] if candidates else []
        newest = float(states[0]["epoch"]) if states else -1.0
        lowest, highest = self.dist.all_reduce_max(
            torch.tensor([-newest, newest], dtype=torch.float64, device=device)).tolist()
        target = -lowest
        if highest < 0:
            return None
        if states and states[0]["epoch"] != target and len(candidates) > 1:
            states = [load_checkpoint(candidates[1])]
        held = float(bool(states) and states[0]["epoch"] == target)
        everyone = -self.dist.all_reduce_max(torch.tensor([-held], dtype=torch.float64, device=device)).item()
        if everyone < 1:  # some process lacks the target epoch
            pattern = shard_file_name(name, "*", self.dist.world_size)
            raise ValueError(f"Trainer: cannot resume: the files {pattern} (and {pattern}.prev) in {directory} "
                             "hold no epoch common to all processes (missing files or a damaged save)")
        return states[0]


def strategy_for(catalog_parallel: bool, dist: DistContext) -> ParallelStrategy:
    """The strategy of ``TrainConfig.catalog_parallel`` over the processes ``dist``.

    Raises:
        ValueError: ``catalog_parallel`` in one process (:data:`CATALOG_NEEDS_PROCESSES`).
    """
    if not catalog_parallel:
        return Replicated(dist)
    if not dist.enabled:
        raise ValueError(f"Trainer: {CATALOG_NEEDS_PROCESSES}")
    return CatalogSharded(dist)


def strategy_of(model: nn.Module, dist: DistContext) -> ParallelStrategy:
    """The strategy a model is in: :class:`CatalogSharded` once converted by
    :func:`~tedrec_fast.parallel.to_catalog_parallel`, else :class:`Replicated` over ``dist``.

    Raises:
        ValueError: a catalog-parallel model with data parallelism (``dist`` of several processes).
    """
    shard = catalog_shard_of(model)
    if shard is None:
        return Replicated(dist)
    if dist.enabled:
        raise ValueError("a catalog-parallel model scores every user on every process; data parallelism (dist) "
                         "cannot be combined with it")
    return CatalogSharded(DistContext(shard.rank, shard.world_size))


def load_sharded_checkpoint(path: Path) -> dict[str, Any]:
    """The per-process files a catalog-parallel run wrote in place of ``path`` (``best.rank0-of-2.pt``, ...)
    merged: ``model`` (and ``best_model``) as single-process state dicts, the other entries of rank 0's file,
    without optimiser state.

    Raises:
        ValueError: no such files (``path`` does not exist either), incomplete files or files of different epochs.
    """
    pattern = re.compile(re.escape(shard_file_name(path.name, "@", "@")).replace("@", r"(\d+)"))
    layouts: dict[int, dict[int, Path]] = {}
    for candidate in path.parent.glob(shard_file_name(path.name, "*", "*")):
        match = pattern.fullmatch(candidate.name)
        if match:
            layouts.setdefault(int(match[2]), {})[int(match[1])] = candidate
    if not layouts:
        return load_checkpoint(path)  # raises: no such file
    if len(layouts) > 1:
        raise ValueError(f"load_run_checkpoint: {path.parent} holds catalog-parallel files of {sorted(layouts)} "
                         f"processes for {path.name}; keep one run per directory")
    world_size, files = layouts.popitem()
    if sorted(files) != list(range(world_size)):
        raise ValueError(f"load_run_checkpoint: {path.parent} lacks some of the {world_size} files "
                         f"{shard_file_name(path.name, '*', world_size)} (has ranks {sorted(files)})")
    states = [load_checkpoint(files[rank]) for rank in range(world_size)]
    if len({state["epoch"] for state in states}) > 1:
        raise ValueError(f"load_run_checkpoint: the files {shard_file_name(path.name, '*', world_size)} in "
                         f"{path.parent} are from different epochs (an interrupted save)")
    keys = states[0]["catalog"]["sharded_keys"]
    merged = {k: v for k, v in states[0].items() if k not in ("optimizer", "catalog")}
    for entry in ("model", "best_model"):
        if merged.get(entry) is not None:
            merged[entry] = merge_catalog_state_dicts([state[entry] for state in states], keys)
    return merged
