"""``python -m bench`` (or ``tedrec-fast bench``): time the benchmark tables on this GPU, write the results.

Default: the spectral-fusion table, written to ``bench/results/<date>_<gpu>.json`` (schema in the
README) with a PNG of speedup over the eager reference beside it. ``--catalog``: the large-catalog
table (bench/full_catalog_ce.py), written to ``bench/results/<date>_<gpu>_catalog.json``. Needs a CUDA device:
numbers not measured on a GPU are written nowhere. ``--data-scale``: the data path at scale on the CPU
(bench/data_scale.py), appended to ``bench/results/data_scale_<date>_cpu.json``. ``--train-step`` (CPU or
GPU): one training step of TedRec and SASRec, fast path against reference mode, and the MoE-modulation op
alone (bench/train_step.py), written to ``bench/results/<date>_<device>_train_step.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filter", default="", help="only cases whose id contains this string")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--catalog", action="store_true", help="the large-catalog table instead")
    parser.add_argument("--catalog-sizes", type=int, nargs="+", default=None,
                        help="--catalog: item-catalog sizes (default: bench/full_catalog_ce.py's CATALOG_SIZES)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no spectral-fusion case after this many seconds (the target shape runs first)")
    parser.add_argument("--data-scale", action="store_true",
                        help="synthetic log -> prepare, load, a few training steps (CPU; bench/data_scale.py)")
    parser.add_argument("--users", type=int, default=100_000, help="--data-scale: users generated")
    parser.add_argument("--items", type=int, default=100_000, help="--data-scale: items generated")
    parser.add_argument("--interactions", type=int, default=1_000_000, help="--data-scale: interactions generated")
    parser.add_argument("--steps", type=int, default=3, help="--data-scale: timed training steps per model")
    parser.add_argument("--models", default="sasrec,tedrec", help="--data-scale: comma-separated models")
    parser.add_argument("--train-step", action="store_true",
                        help="time one training step, fast vs reference mode (CPU or GPU), and the MoE op alone")
    parser.add_argument("--batch-size", type=int, default=None, help="--train-step: batch (default 256 CPU, 2048 GPU)")
    parser.add_argument("--repeats", type=int, default=5, help="--train-step: timed steps per mode")
    args = parser.parse_args(argv)
    # the heavy imports (torch) only now, so that --help answers at once
    import torch

    from bench.environment import write_json
    if args.data_scale:
        from bench.data_scale import append_record, run

        record = run(args.users, args.items, args.interactions, steps=args.steps, models=tuple(args.models.split(",")))
        print(json.dumps(record))
        print(f"wrote {append_record(record, args.out_dir)}")
        return 0
    if args.train_step:
        from bench.environment import results_path
        from bench.train_step import train_step_document

        device = "cuda" if torch.cuda.is_available() else "cpu"
        batch = args.batch_size or (2048 if device == "cuda" else 256)
        document = train_step_document(batch, repeats=args.repeats, device=device,
                                       report=lambda r: print(json.dumps(r), flush=True))
        print(f"wrote {write_json(document, results_path(args.out_dir, document, '_train_step'))}")
        return 0
    if not torch.cuda.is_available():
        print("python -m bench needs a CUDA device (none here); `pytest bench/` runs CPU reference sizes.",
              file=sys.stderr)
        return 2
    from bench.full_catalog_ce import CATALOG_SIZES
    from bench.spectral_fusion import GPU_CASES
    from bench.tables import measure, measure_catalog, write

    if args.catalog:
        sizes = tuple(args.catalog_sizes or CATALOG_SIZES)
        print(f"wrote {write(measure_catalog(sizes), args.out_dir, '_catalog')}")
        return 0
    cases = [c for c in GPU_CASES if args.filter in c.id]
    print(f"wrote {write(measure(cases, budget_s=args.budget_s), args.out_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
