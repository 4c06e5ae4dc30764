"""Training and evaluation: :class:`Trainer`, :func:`full_sort_evaluate` and their helpers."""

from tedrec_fast.train.checkpoint import load_checkpoint, save_atomic, seed_everything
from tedrec_fast.train.distributed import DistContext, init_distributed
from tedrec_fast.train.evaluate import DEFAULT_KS, full_sort_evaluate, metric_names, metric_sums, target_ranks
from tedrec_fast.train.report import format_metrics_table
from tedrec_fast.train.trainer import Trainer, TrainingDiverged, TrainResult

__all__ = [
    "DEFAULT_KS",
    "DistContext",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "format_metrics_table",
    "full_sort_evaluate",
    "init_distributed",
    "load_checkpoint",
    "metric_names",
    "metric_sums",
    "save_atomic",
    "seed_everything",
    "target_ranks",
]
