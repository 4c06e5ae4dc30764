"""Run configuration: what to train (dataset, model, its settings, each op's backend) and how (:class:`TrainConfig`).

One route per setting. A YAML config (and the checkpoint metadata ``tedrec-fast evaluate`` reads) is a flat
mapping whose keys are field names of :class:`RunConfig` or :class:`TrainConfig` (the latter are routed to
``RunConfig.train``), with two nested sections:

* ``backends``: op -> backend (:class:`OpBackends`: ``spectral_fusion``, ``spectral_filter``,
  ``full_catalog_ce``), for every model that runs the op;
* ``model_settings``: model name -> its settings (:data:`MODEL_CONFIGS`: :class:`TedRecConfig`,
  :class:`SASRecConfig`, :class:`FMLPRecConfig`, :class:`UniSRecConfig`, :class:`TSSRConfig`, whose defaults
  the model constructors take as theirs). ``train`` and ``evaluate`` read the entry of ``model``, ``compare``
  that of each compared model: one schema for all three.

Unknown keys raise ``ValueError``. The keys of older versions are still read: ``fusion_backend`` as
``backends.spectral_fusion`` and ``model_args`` (constructor arguments of ``model``, or a map from model name
to them) as ``model_settings``, with a ``FutureWarning`` naming the new key when they come from a config file
or flags (:func:`load_config`). The packaged defaults (``tedrec_fast/configs/default.yaml``) are the paper's
training protocol (docs/DESIGN.md section 1).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from tedrec_fast.paths import cache_dir

__all__ = ["TrainConfig", "RunConfig", "OpBackends", "ModelConfig", "TedRecConfig", "SASRecConfig", "FMLPRecConfig",
           "UniSRecConfig", "TSSRConfig", "MODEL_CONFIGS", "model_config_class", "load_config", "merge_settings",
           "read_config_file",
           "CONFIG_DIR", "default_data_dir", "CPU_SCHEDULE"]

#: directory of the packaged YAML configs
CONFIG_DIR = Path(__file__).parent / "configs"

#: TrainConfig settings that replace the unset ones when ``tedrec-fast train`` runs on a CPU: a time-budgeted
#: schedule on the fast training step (batch 128, Adam lr 1e-3, an evaluation on the valid split every 40 steps,
#: training stops starting new 40-step epochs after 9 minutes, the best valid epoch is tested). No test metric
#: entered the choice; the valid-split runs behind it are in bench/NOTES.md ("CPU schedule").
CPU_SCHEDULE: dict[str, Any] = {"epochs": 100, "batch_size": 128, "lr": 0.001, "max_steps_per_epoch": 40,
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
class OpBackends:
    """The backend of each op, for every model that runs it: ``"auto"`` or a backend name
    (``tedrec-fast backends`` lists them; a name the op does not know fails when the model is built).

    Attributes:
        spectral_fusion: TedRec's fusion layer (``auto``, ``triton``, ``cuda``, ``torch``).
        spectral_filter: FMLP-Rec's filters (``auto``, ``triton``, ``torch``).
        full_catalog_ce: the training loss of every model (``auto``, ``triton``, ``torch-chunked``, ``torch``).
        moe_modulation: TedRec's MoE adaptor on its fast path (``auto``, ``triton``, ``cpp``, ``torch``).
    """

    spectral_fusion: str = "auto"
    spectral_filter: str = "auto"
    full_catalog_ce: str = "auto"
    moe_modulation: str = "auto"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type("backends", f.name, getattr(self, f.name), (str,))

    @classmethod
    def from_dict(cls, values: object) -> OpBackends:
        """Build from ``{op: backend}``; raises ``ValueError`` naming an unknown op."""
        if not isinstance(values, Mapping):
            raise TypeError(f"backends must be a mapping of op -> backend, got {type(values).__name__}")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"backends: unknown op(s) {unknown}; ops: {[f.name for f in dataclasses.fields(cls)]}")
        return cls(**values)


@dataclass
class ModelConfig:
    """Settings of one model: the keyword arguments of its constructor, typed and checked. Their defaults are
    the only ones: the constructor's defaults read them (``hidden_size: int = TedRecConfig.hidden_size``).

    The constructor's backend arguments are not settings of the model: they come from
    :class:`OpBackends` (``BACKEND_ARGS``: op -> argument), so one setting has one route.
    """

    #: op -> the constructor argument that takes its backend
    BACKEND_ARGS: ClassVar[dict[str, str]] = {"full_catalog_ce": "loss_backend"}

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), f.default
            if isinstance(default, bool):
                _check_type(owner, f.name, value, (bool,))
            elif isinstance(default, int):
                _check_positive_int(owner, f.name, value)
            else:
                _check_type(owner, f.name, value, (int, float))

    def constructor_kwargs(self, backends: OpBackends) -> dict[str, Any]:
        """Every setting, plus the backend of each op the model runs: what its constructor takes."""
        return {**dataclasses.asdict(self), **{arg: getattr(backends, op) for op, arg in self.BACKEND_ARGS.items()}}


@dataclass
class SASRecConfig(ModelConfig):
    """:class:`~tedrec_fast.models.SASRec` (RecBole's defaults)."""

    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    hidden_dropout: float = 0.5
    attn_dropout: float = 0.5
    reference: bool = False


@dataclass
class FMLPRecConfig(ModelConfig):
    """:class:`~tedrec_fast.models.FMLPRec` (the paper's defaults); its filters' backend is ``spectral_filter``."""

    BACKEND_ARGS: ClassVar[dict[str, str]] = {"spectral_filter": "filter_backend", "full_catalog_ce": "loss_backend"}

    hidden_size: int = 64
    n_layers: int = 2
    inner_size: int = 256
    hidden_dropout: float = 0.5
    layer_norm_eps: float = 1e-12
    reference: bool = False


@dataclass
class _TextAdaptorConfig(ModelConfig):
    """The settings TedRec and the UniSRec-style baseline share: a SASRec Transformer over text-adapted items."""

    hidden_size: int = 300
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    hidden_dropout: float = 0.5
    attn_dropout: float = 0.5
    n_experts: int = 8
    adaptor_dropout: float = 0.2
    temperature: float = 0.07


@dataclass
class TedRecConfig(_TextAdaptorConfig):
    """:class:`~tedrec_fast.models.TedRec` and its ablations (the paper's settings); the ablation flags come with
    the model name (``tedrec-wo-ag``, ...), the fusion layer's backend is ``spectral_fusion``."""

    BACKEND_ARGS: ClassVar[dict[str, str]] = {"spectral_fusion": "fusion_backend", "full_catalog_ce": "loss_backend",
                                              "moe_modulation": "moe_backend"}

    reference: bool = False


@dataclass
class UniSRecConfig(_TextAdaptorConfig):
    """:class:`~tedrec_fast.models.UniSRecStyle` (TedRec's settings where they apply)."""


@dataclass
class TSSRConfig(ModelConfig):
    """:class:`~tedrec_fast.models.TSSR` (SASRec's sizes, one cross-attention layer, contrast temperature 0.2)."""

    hidden_size: int = 64
    n_layers: int = 2
    n_cross_layers: int = 1
    n_heads: int = 2
    inner_size: int = 256
    hidden_dropout: float = 0.5
    attn_dropout: float = 0.5
    contrast_temperature: float = 0.2
    user_weight: float = 1.0
    item_weight: float = 1.0
    layer_norm_eps: float = 1e-12


#: model name (``tedrec_fast.models.MODEL_NAMES``) -> its settings
MODEL_CONFIGS: dict[str, type[ModelConfig]] = {
    "tedrec": TedRecConfig, "tedrec-wo-mm": TedRecConfig, "tedrec-wo-ag": TedRecConfig,
    "tedrec-wo-if": TedRecConfig, "tedrec-wo-tf": TedRecConfig,
    "sasrec": SASRecConfig, "fmlprec": FMLPRecConfig, "unisrec": UniSRecConfig, "tssr": TSSRConfig,
}


def model_config_class(name: str) -> type[ModelConfig]:
    """The settings class of model ``name`` (case-insensitive); ``ValueError`` listing the models if unknown."""
    if not isinstance(name, str) or name.lower() not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_CONFIGS)}")
    return MODEL_CONFIGS[name.lower()]


def _model_config(name: str, settings: object) -> ModelConfig:
    """``model_settings[name]`` as its typed :class:`ModelConfig`; errors name the model and the setting."""
    cls = model_config_class(name)
    where = f"model_settings.{name}"
    if not isinstance(settings, Mapping):
        raise TypeError(f"{where} must be a mapping of setting -> value, got {type(settings).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    for key in settings:
        op = next((op for op, arg in cls.BACKEND_ARGS.items() if arg == key), None)
        if op is not None:
            raise ValueError(f"{where}: {key} is not a model setting; set the backend with backends: {{{op}: ...}}")
        if key not in known:
            raise ValueError(f"{where}: unknown setting {key!r}; {cls.__name__} has {', '.join(known)}")
    try:
        return cls(**settings)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{where}: {err}") from None


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


#: old keys of a constructor's backend argument -> the op of :class:`OpBackends` that sets it now
_LEGACY_BACKEND_ARGS = {"fusion_backend": "spectral_fusion", "filter_backend": "spectral_filter",
                        "loss_backend": "full_catalog_ce"}


def _upgrade_legacy(values: Mapping[str, Any], model: object = None) -> tuple[dict[str, Any], list[str]]:
    """Read the keys of older versions (``fusion_backend``, ``model_args``) into ``backends`` and
    ``model_settings``; a new key wins over an old one. Flat ``model_args`` are the settings of ``model``
    (default: ``values["model"]``). Returns the new mapping and one note per old key."""
    values = dict(values)
    notes: list[str] = []
    if "fusion_backend" not in values and "model_args" not in values:
        return values, notes
    backends = values.get("backends") if "backends" in values else {}
    settings = values.get("model_settings") if "model_settings" in values else {}
    if not (isinstance(backends, Mapping) and isinstance(settings, Mapping)):
        return values, notes  # RunConfig reports the wrong type
    backends, settings = dict(backends), {k: dict(v) if isinstance(v, Mapping) else v for k, v in settings.items()}
    old_backends: dict[str, Any] = {}
    if "model_args" in values:
        args = values.pop("model_args")
        if not isinstance(args, Mapping):
            raise TypeError(f"model_args (now model_settings) must be a mapping, got {type(args).__name__}")
        nested = bool(args) and all(isinstance(k, str) and k.lower() in MODEL_CONFIGS and isinstance(v, Mapping)
                                    for k, v in args.items())
        model = str(model if model is not None else values.get("model", RunConfig.model)).lower()
        per_model = {k.lower(): dict(v) for k, v in args.items()} if nested else ({model: dict(args)} if args else {})
        for name, kwargs in per_model.items():
            for arg, op in _LEGACY_BACKEND_ARGS.items():
                if arg in kwargs:
                    old_backends[op] = kwargs.pop(arg)
            current = settings.get(name)
            settings[name] = {**kwargs, **(current if isinstance(current, Mapping) else {})}
        notes.append(f"model_args is now model_settings: {per_model}")
    if "fusion_backend" in values:  # the old model_args' fusion_backend won over it, as before
        value = values.pop("fusion_backend")
        old_backends.setdefault("spectral_fusion", value)
        notes.append(f"fusion_backend is now backends: {{spectral_fusion: {value}}}")
    values["backends"] = {**old_backends, **backends}
    values["model_settings"] = settings
    return values, notes


@dataclass
class RunConfig:
    """What to train, where, and with which :class:`TrainConfig`.

    Attributes:
        dataset: a source known to ``tedrec_fast.data.prepare_dataset`` (e.g. ``"ml-100k"``), or the path of an
            already prepared dataset directory.
        raw: the source's raw file or directory (``None``: downloaded by ``prepare_dataset``).
        model: a name of :data:`MODEL_CONFIGS` (``tedrec``, ``tedrec-wo-mm``, ..., ``sasrec``, ``fmlprec``,
            ``unisrec``, ``tssr``).
        model_settings: model name -> its settings (a mapping of fields of its :class:`ModelConfig`); models
            without an entry, and settings not given, keep their defaults (:meth:`model_config`).
        backends: each op's backend (:class:`OpBackends`), for every model that runs the op.
        encoder: text encoder for ``tedrec_fast.text.encode_dataset_texts``.
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
    model_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    backends: OpBackends = field(default_factory=OpBackends)
    encoder: str = "minilm"
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
        for name in ("dataset", "model", "encoder", "data_dir", "device", "results_dir"):
            _check_type(owner, name, getattr(self, name), (str,))
        model_config_class(self.model)
        _check_type(owner, "model_settings", self.model_settings, (dict,))
        for name, settings in self.model_settings.items():
            _model_config(name, settings)
        _check_type(owner, "backends", self.backends, (OpBackends,))
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

    def model_config(self, name: str | None = None) -> ModelConfig:
        """The typed settings of model ``name`` (default: :attr:`model`): its defaults, then its ``model_settings``."""
        name = (self.model if name is None else name).lower()
        settings = next((v for k, v in self.model_settings.items() if k.lower() == name), {})
        return _model_config(name, settings)

    def model_kwargs(self, name: str | None = None) -> dict[str, Any]:
        """Constructor arguments of model ``name`` (default: :attr:`model`): every setting of
        :meth:`model_config` and the backend of each op it runs (from :attr:`backends`)."""
        return self.model_config(name).constructor_kwargs(self.backends)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, warn_legacy: bool = False) -> RunConfig:
        """Build from a flat mapping of :class:`RunConfig` and :class:`TrainConfig` field names (``backends``
        and ``model_settings`` nested). Old keys are read (module docstring); ``warn_legacy`` warns for each."""
        if not isinstance(values, dict):
            raise TypeError(f"RunConfig.from_dict: values must be a mapping, got {type(values).__name__}")
        values, notes = _upgrade_legacy(values)
        if warn_legacy:
            for note in notes:
                warnings.warn(f"config: {note}", FutureWarning, stacklevel=3)
        run_fields = {f.name for f in dataclasses.fields(cls)} - {"train"}
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(values) - run_fields - train_fields)
        if unknown:
            raise ValueError(f"RunConfig: unknown config keys {unknown}")
        train = TrainConfig(**{k: v for k, v in values.items() if k in train_fields})
        run = {k: v for k, v in values.items() if k in run_fields}
        run["backends"] = OpBackends.from_dict(run.get("backends", {}))
        return cls(train=train, **run)

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping :meth:`from_dict` reads (YAML- and JSON-serialisable)."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "train"}
        flat["backends"] = dataclasses.asdict(self.backends)
        flat["model_settings"] = {name: dict(settings) for name, settings in self.model_settings.items()}
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


def merge_settings(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``layer``; the sections ``backends`` and ``model_settings`` (per model) are merged."""
    merged = {**base, **layer}
    for key in ("backends", "model_settings"):
        old, new = base.get(key), layer.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            merged[key] = {**old, **new}
    settings_old, settings_new = base.get("model_settings"), layer.get("model_settings")
    if isinstance(settings_old, Mapping) and isinstance(settings_new, Mapping):
        for name, value in settings_new.items():
            if isinstance(settings_old.get(name), Mapping) and isinstance(value, Mapping):
                merged["model_settings"][name] = {**settings_old[name], **value}
    return merged


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read the packaged defaults, then the YAML file ``path`` (if any), then ``overrides`` (``None`` values skip).

    Each layer overrides the one before key by key, and within ``backends`` and ``model_settings`` op by op and
    setting by setting. Old keys (``fusion_backend``, ``model_args``) are read with a ``FutureWarning``.

    Raises:
        ValueError: for unknown keys or a YAML file that is not a mapping.
    """
    layers = [read_config_file(CONFIG_DIR / "default.yaml")]
    if path is not None:
        layers.append(read_config_file(path))
    layers.append({k: v for k, v in (overrides or {}).items() if v is not None})
    model = next((layer["model"] for layer in reversed(layers) if "model" in layer), RunConfig.model)
    values: dict[str, Any] = {}
    for layer in layers:
        upgraded, notes = _upgrade_legacy(layer, model)
        for note in notes:
            warnings.warn(f"config: {note}", FutureWarning, stacklevel=2)
        values = merge_settings(values, upgraded)
    return RunConfig.from_dict(values)
