"""``tedrec-fast compare``: train several models on the same data, then a Table-3-style comparison.

Every model gets the same prepared dataset (loaded once), the same text embeddings (encoded once, for the
models that read text), the same :class:`~tedrec_fast.config.TrainConfig` (seed, early stopping on valid
NDCG@10, best weights restored for the test) and its own run directory ``<output_dir>/<model>``. The test
metrics land in ``comparison.md``, ``comparison.csv`` and ``comparison.png`` (grouped bars) in the output
directory: rows R@10, R@20, N@10, N@20, one column per model, plus TedRec's improvement over the best other
model in %. ``--from-records`` tabulates runs already recorded; a model recorded with several seeds gets the
mean ± sample standard deviation over its seeds. On a GPU (or with ``record``) each run is appended to the
result records as ``"op": "train"``, as ``tedrec-fast train`` does.

Each job is :mod:`tedrec_fast.train.run`'s (start, data, text, model and its settings, backends, result
record); this module adds the loop over the models and the table. The data, text and model packages are
imported inside the functions that use them.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tedrec_fast.config import RunConfig, TrainConfig
from tedrec_fast.safe_files import atomic_file, atomic_save, atomic_write_bytes
from tedrec_fast.train.checkpoint import seed_everything
from tedrec_fast.train.distributed import DistContext
from tedrec_fast.train.trainer import Trainer, TrainResult

__all__ = ["TABLE_METRICS", "REFERENCE_MODEL", "DEFAULT_MODELS", "SCHEDULE_KEYS", "ComparisonTable", "parse_model_list",
           "check_model_names", "comparison_table", "format_markdown", "write_comparison", "recorded_runs",
           "compare_recorded", "compare_models", "compare_dir", "compare_run"]

#: table row label -> metric key of ``full_sort_evaluate``
TABLE_METRICS: dict[str, str] = {"R@10": "recall@10", "R@20": "recall@20", "N@10": "ndcg@10", "N@20": "ndcg@20"}
#: the model whose improvement over the best other model is reported
REFERENCE_MODEL = "tedrec"
#: what ``tedrec-fast compare`` trains when ``--models`` is not given
DEFAULT_MODELS = "sasrec,unisrec,tssr,tedrec"
#: record keys that the seeds of one model must share for their mean to describe one experiment
SCHEDULE_KEYS = ("batch_size", "lr", "patience", "max_steps_per_epoch", "bf16", "encoder")
_FILE_STEM = "comparison"


@dataclass
class ComparisonTable:
    """Test metrics of several models.

    Attributes:
        models: column order.
        values: row label (``R@10``, ...) -> model -> value (the mean over the model's runs).
        improvement: row label -> % improvement of :data:`REFERENCE_MODEL` over the best other model, on the
            means (``None`` when the reference model or any other model is missing).
        runs: model -> how many runs (seeds) its values average.
        spread: row label -> model -> sample standard deviation over its runs, for the models with two or more.
    """

    models: list[str]
    values: dict[str, dict[str, float]]
    improvement: dict[str, float] | None
    runs: dict[str, int] = field(default_factory=dict)
    spread: dict[str, dict[str, float]] = field(default_factory=dict)

    def cell(self, label: str, model: str) -> str:
        """``0.0650`` for one run, ``0.0650 ± 0.0012`` for several."""
        std = self.spread.get(label, {}).get(model)
        return f"{self.values[label][model]:.4f}" + ("" if std is None else f" ± {std:.4f}")


def parse_model_list(models: str | Sequence[str]) -> list[str]:
    """``"sasrec, TSSR,tedrec"`` (or a sequence of names) -> ``["sasrec", "tssr", "tedrec"]``.

    Raises:
        TypeError: ``models`` is neither a string nor a sequence of strings.
        ValueError: no name, or a name given twice.
    """
    if isinstance(models, str):
        models = models.split(",")
    if not isinstance(models, Sequence) or not all(isinstance(m, str) for m in models):
        raise TypeError(f"models must be a comma-separated string or a sequence of str, got {models!r}")
    names = [m.strip().lower() for m in models if m.strip()]
    if not names:
        raise ValueError("models: give at least one model name")
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise ValueError(f"models: each model once, got {', '.join(repeated)} more than once")
    return names


def check_model_names(names: Sequence[str], known: Collection[str]) -> None:
    """Raise ``ValueError`` naming the unknown models of ``names`` and listing the ``known`` ones."""
    unknown = [m for m in names if m not in known]
    if unknown:
        raise ValueError(f"models: unknown model(s) {', '.join(unknown)}; known models: {', '.join(known)}")


def comparison_table(test_metrics: Mapping[str, Mapping[str, float] | Sequence[Mapping[str, float]]]
                     ) -> ComparisonTable:
    """Build the table from ``model -> {metric key -> value}``, or ``model -> [{metric key -> value}, ...]``
    (one dict per seed: the table holds their mean and sample standard deviation); the keys of
    :data:`TABLE_METRICS` are needed."""
    if not test_metrics:
        raise ValueError("test_metrics: no model to compare")
    models = list(test_metrics)
    per_run = {m: [test_metrics[m]] if isinstance(test_metrics[m], Mapping) else list(test_metrics[m])
               for m in models}
    for model, runs in per_run.items():
        if not runs:
            raise ValueError(f"test_metrics[{model!r}]: no run")
        missing = sorted({key for run in runs for key in TABLE_METRICS.values() if key not in run})
        if missing:
            raise ValueError(f"test_metrics[{model!r}] lacks {', '.join(missing)}")
    values: dict[str, dict[str, float]] = {}
    spread: dict[str, dict[str, float]] = {}
    for label, key in TABLE_METRICS.items():
        samples = {m: np.array([float(run[key]) for run in per_run[m]]) for m in models}
        values[label] = {m: float(x.mean()) for m, x in samples.items()}
        spread[label] = {m: float(x.std(ddof=1)) for m, x in samples.items() if len(x) > 1}
    others = [m for m in models if m != REFERENCE_MODEL]
    improvement = None
    if REFERENCE_MODEL in models and others:
        improvement = {}
        for label, row in values.items():
            best = max(row[m] for m in others)
            improvement[label] = (row[REFERENCE_MODEL] - best) / best * 100.0 if best > 0 else math.nan
    return ComparisonTable(models, values, improvement, {m: len(r) for m, r in per_run.items()},
                           {label: row for label, row in spread.items() if row})


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.2f}%"


def format_markdown(table: ComparisonTable) -> str:
    """The table as Markdown: rows = metrics, columns = models (+ ``Improv.``), best value of a row in bold;
    a model averaged over several runs shows ``mean ± std`` and its run count in the header."""
    names = [m if table.runs.get(m, 1) == 1 else f"{m} ({table.runs[m]} seeds)" for m in table.models]
    header = ["metric", *names] + (["Improv."] if table.improvement is not None else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in table.values.items():
        best = max(row.values())
        cells = [f"**{table.cell(label, m)}**" if v == best else table.cell(label, m) for m, v in row.items()]
        if table.improvement is not None:
            cells.append(_percent(table.improvement[label]))
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(table: ComparisonTable, path: Path) -> None:
    with atomic_file(path, "results") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        spread_columns = [m for m in table.models if table.runs.get(m, 1) > 1]
        writer.writerow(["metric", *table.models, *(f"{m}_std" for m in spread_columns)]
                        + (["improvement_percent"] if table.improvement else []))
        for label, row in table.values.items():
            stds = [f"{table.spread[label][m]:.6f}" for m in spread_columns]
            extra = [f"{table.improvement[label]:.4f}"] if table.improvement else []
            writer.writerow([label, *(f"{row[m]:.6f}" for m in table.models), *stds, *extra])


def _write_png(table: ComparisonTable, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.6 + 1.4 * len(table.values), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = list(table.values)
    width = 0.8 / len(table.models)
    for k, model in enumerate(table.models):
        xs = np.arange(len(labels)) + (k - (len(table.models) - 1) / 2) * width
        errors = [table.spread.get(label, {}).get(model, 0.0) for label in labels]
        ax.bar(xs, [table.values[label][model] for label in labels], width, label=model,
               yerr=errors if any(errors) else None, capsize=2)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylabel("test metric (full sort)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    atomic_save(path, lambda handle: fig.savefig(handle, dpi=120, format="png"), "results")


def write_comparison(table: ComparisonTable, output_dir: str | Path, title: str = "",
                     notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``comparison.md`` (``notes`` as lines below the table), ``.csv`` and ``.png`` into ``output_dir``;
    returns ``{"md"|"csv"|"png": path}``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{_FILE_STEM}.{ext}" for ext in ("md", "csv", "png")}
    heading = f"# {title}\n\n" if title else ""
    footer = "".join(f"\n{note}\n" for note in notes)
    atomic_write_bytes(paths["md"], (heading + format_markdown(table) + footer).encode("utf-8"), "results")
    _write_csv(table, paths["csv"])
    _write_png(table, paths["png"], title)
    return paths


def recorded_runs(paths: Sequence[str | Path], dataset: str,
                  models: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """``model -> records``: the last ``"op": "train"`` record of each (model, seed) on ``dataset`` in the result
    files ``paths`` (read in order; see :func:`~tedrec_fast.train.report.append_result_record`), seeds in the
    order first seen.

    With ``models``, exactly those, in that order. Raises ``ValueError`` naming the file for one that is not a
    JSON list, naming the models without a record, and naming the model and setting when the seeds of one model
    were recorded with different schedules (:data:`SCHEDULE_KEYS`).
    """
    runs: dict[str, dict[Any, dict[str, Any]]] = {}
    for path in paths:
        try:
            records = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of result records")
        for record in records:
            if isinstance(record, dict) and record.get("op") == "train" and record.get("dataset") == dataset:
                runs.setdefault(str(record["model"]).lower(), {})[record.get("seed")] = record
    if models is None and not runs:
        raise ValueError(f"no 'op': 'train' record of dataset {dataset!r} in {', '.join(map(str, paths))}")
    missing = [m for m in models or () if m not in runs]
    if missing:
        raise ValueError(f"models: no 'op': 'train' record of {', '.join(missing)} on dataset {dataset!r} in "
                         f"{', '.join(map(str, paths))}")
    for model, by_seed in runs.items():
        for key in SCHEDULE_KEYS:
            seen = sorted({json.dumps(record.get(key)) for record in by_seed.values()})
            if len(seen) > 1:
                raise ValueError(f"{model}: its records on {dataset!r} mix schedules ({key} {' and '.join(seen)} "
                                 f"across seeds); pass the result files of one schedule")
    return {m: list(runs[m].values()) for m in (models if models is not None else runs)}


def compare_recorded(cfg: RunConfig, paths: Sequence[str | Path], models: str | Sequence[str] | None = None
                     ) -> ComparisonTable:
    """``tedrec-fast compare --from-records``: the table of runs already recorded (e.g. on a GPU, over several
    sessions), written like :func:`compare_run`'s: a model with several seeds as mean ± sample standard deviation
    over them; runs stopped by a time budget are named below the table."""
    dataset = Path(cfg.dataset).name
    runs = recorded_runs(paths, dataset, parse_model_list(models) if models else None)
    table = comparison_table({m: [{key.removeprefix("test_"): v for key, v in r.items() if key.startswith("test_")}
                                  for r in records] for m, records in runs.items()})
    devices = sorted({str(r.get("device")) for records in runs.values() for r in records})
    notes = [f"Recorded runs on {', '.join(devices)}: "
             + ", ".join(f"{m} {_describe(records)}" for m, records in runs.items()) + "."]
    if table.spread:
        notes.append("A model with several seeds: mean ± sample standard deviation over its seeds.")
    differing = [f"{key} " + ", ".join(f"{m} {records[0].get(key)}" for m, records in runs.items())
                 for key in SCHEDULE_KEYS if key != "encoder"
                 and len({json.dumps(records[0].get(key)) for records in runs.values()}) > 1]
    if differing:
        notes.append(f"The models were trained on different schedules: {'; '.join(differing)}.")
    cut = [m for m, records in runs.items() if any(r.get("stop_reason") == "time budget" for r in records)]
    if cut:
        notes.append(f"Stopped by the time budget, possibly before converging: {', '.join(cut)}.")
    output_dir = compare_dir(cfg)
    paths_written = write_comparison(table, output_dir, title=f"{dataset}: test metrics (full sort)", notes=notes)
    print(format_markdown(table) + "".join(f"\n{note}" for note in notes))
    print("written: " + ", ".join(str(p) for p in paths_written.values()))
    return table


def _describe(records: Sequence[Mapping[str, Any]]) -> str:
    """``2026-11-23 (seed 1, 30 epochs)`` for one run; ``seeds 1, 2 (30, 25 epochs)`` for several."""
    epochs = ", ".join(str(r.get("epochs", "?")) for r in records)
    if len(records) == 1:
        seed = records[0].get("seed")
        return f"{records[0].get('date', '?')} ({'' if seed is None else f'seed {seed}, '}{epochs} epochs)"
    return f"seeds {', '.join(str(r.get('seed')) for r in records)} ({epochs} epochs)"


def compare_models(
    dataset: Any,
    names: Sequence[str],
    build: Callable[[str], nn.Module],
    config: TrainConfig,
    *,
    device: str | torch.device,
    output_dir: str | Path | None = None,
    dist: DistContext | None = None,
    metadata: Callable[[str], dict[str, Any]] | None = None,
    on_result: Callable[[str, nn.Module, TrainResult], None] | None = None,
) -> dict[str, TrainResult]:
    """Train ``build(name)`` for each name with the same ``dataset`` and ``config`` (:class:`Trainer`).

    Global RNGs are re-seeded with ``config.seed`` before each model is built, so every model starts from
    the same seed. Run directories: ``<output_dir>/<name>`` (``None``: nothing written). ``metadata(name)``
    goes into the checkpoints; ``on_result(name, model, result)`` is called after each run.
    """
    results: dict[str, TrainResult] = {}
    for name in names:
        seed_everything(config.seed, config.deterministic)
        model = build(name)
        run_dir = Path(output_dir) / name if output_dir is not None else None
        trainer = Trainer(model, dataset, config, device=device, output_dir=run_dir, dist=dist,
                          metadata=metadata(name) if metadata else None)
        results[name] = trainer.fit()
        if on_result is not None:
            on_result(name, model, results[name])
    return results


def compare_dir(cfg: RunConfig) -> Path:
    """The comparison directory: ``cfg.output_dir``, or ``runs/compare-<dataset>``."""
    return Path(cfg.output_dir) if cfg.output_dir else Path("runs") / f"compare-{Path(cfg.dataset).stem}"


def compare_run(cfg: RunConfig, models: str | Sequence[str] = DEFAULT_MODELS,
                explicit: Collection[str] = ()) -> ComparisonTable:
    """``tedrec-fast compare``: train ``models`` on ``cfg.dataset`` with ``cfg.train``, write and print the table.

    ``cfg.model`` is ignored; each model is built as ``tedrec-fast train`` builds it, with its entry of
    ``cfg.model_settings`` and ``cfg.backends`` (:func:`tedrec_fast.train.run.build_recommender`);
    ``cfg.output_dir`` is the comparison directory (:func:`compare_dir`). On a CPU the unset settings of the
    short schedule apply, as for ``train``.

    Raises:
        ValueError: an unknown model name, a bad setting, or settings for a model that is not compared
            (checked before any data is loaded).
    """
    from tedrec_fast.models import MODEL_NAMES, needs_text_embeddings
    from tedrec_fast.train import run

    names = parse_model_list(models)
    check_model_names(names, MODEL_NAMES)
    stray = sorted({name.lower() for name in cfg.model_settings} - set(names))
    if stray:
        raise ValueError(f"model_settings (model_args before): settings for {', '.join(stray)}, which is not a "
                         f"compared model ({', '.join(names)})")
    for name in names:
        cfg.model_kwargs(name)
    dist, device, say = run.start_run(cfg, explicit)
    output_dir = compare_dir(cfg)
    dataset = run.load_data(cfg, dist)
    text = run.load_text_embeddings(cfg, dataset, dist, names)
    say(f"dataset {dataset.name}: {dataset.n_users} users, {dataset.n_items - 1} items | models {', '.join(names)} "
        f"| device {device} | output {output_dir}")

    def build(name: str) -> nn.Module:
        return run.build_recommender(cfg, dataset.n_items, text, name)

    def metadata(name: str) -> dict[str, Any]:
        return {**cfg.to_dict(), "model": name, "output_dir": str(output_dir / name)}

    def record(name: str, model: nn.Module, result: TrainResult) -> None:
        say(f"{name}: best epoch {result.best_epoch} of {result.epochs_run}, "
            f"test ndcg@10 {result.test['ndcg@10']:.4f} ({result.seconds_per_epoch:.1f}s per epoch; "
            f"stopped by {result.stop_reason})")
        backends = run.op_backends(model, device, cfg.train.batch_size // dist.world_size, cfg.train.bf16)
        run.record_result(cfg, dataset.name, name, device, dist, backends, result,
                          text_used=needs_text_embeddings(name))

    results = compare_models(dataset, names, build, cfg.train, device=device, output_dir=output_dir, dist=dist,
                             metadata=metadata, on_result=record)
    table = comparison_table({name: result.test for name, result in results.items()})
    if dist.is_main:
        paths = write_comparison(table, output_dir, title=f"{dataset.name}: test metrics (full sort)")
        say("\n" + format_markdown(table))
        say("written: " + ", ".join(str(p) for p in paths.values()))
    return table
