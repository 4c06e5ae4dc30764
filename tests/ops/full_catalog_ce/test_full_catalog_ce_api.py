"""Public API of the full-catalog cross-entropy: bad input, dispatch, autocast, torch.compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tedrec_fast
from tedrec_fast import full_catalog_cross_entropy
from tedrec_fast.ops.full_catalog_ce.reference import full_catalog_cross_entropy_reference


def _good() -> dict:
    gen = torch.Generator().manual_seed(0)
    return dict(query=torch.randn(4, 6, generator=gen), item_weight=torch.randn(9, 6, generator=gen),
                targets=torch.tensor([1, 0, 8, -100]))


def _with(**changes) -> dict:
    args = _good()
    args.update({k: v(args) if callable(v) else v for k, v in changes.items()})
    return args


BAD_INPUTS = [
    ("query not a tensor", _with(query=[[1.0]]), TypeError, "query must be a torch.Tensor"),
    ("targets not a tensor", _with(targets=[1, 2, 3, 4]), TypeError, "targets must be a torch.Tensor"),
    ("query integer", _with(query=lambda a: a["query"].long()), TypeError, "query must be a real floating"),
    ("items bool", _with(item_weight=lambda a: a["item_weight"] > 0), TypeError, "item_weight must be a real"),
    ("dtype mismatch", _with(item_weight=lambda a: a["item_weight"].double()), TypeError,
     "item_weight has dtype torch.float64"),
    ("targets int32", _with(targets=lambda a: a["targets"].int()), TypeError, "targets must be an int64"),
    ("query 1-D", _with(query=lambda a: a["query"][0]), ValueError, r"query must have shape \(B, d\)"),
    ("query 3-D", _with(query=lambda a: a["query"][None]), ValueError, r"query must have shape \(B, d\)"),
    ("items 1-D", _with(item_weight=lambda a: a["item_weight"][0]), ValueError, r"item_weight must have shape"),
    ("d mismatch", _with(item_weight=lambda a: a["item_weight"][:, :5]), ValueError, "hidden size d=6"),
    ("empty catalog", _with(item_weight=lambda a: a["item_weight"][:0]), ValueError, "at least one row"),
    ("d zero", _with(query=torch.zeros(4, 0), item_weight=torch.zeros(9, 0)), ValueError, "d >= 1"),
    ("targets 2-D", _with(targets=lambda a: a["targets"][None]), ValueError, r"targets must have shape \(B,\)"),
    ("targets length", _with(targets=lambda a: a["targets"][:3]), ValueError, r"targets must have shape \(B,\)"),
    ("target too large", _with(targets=torch.tensor([1, 9, 0, 0])), ValueError, r"targets must be in \[0, 9\).*9"),
    ("target negative", _with(targets=torch.tensor([1, -1, 0, 0])), ValueError, r"targets must be in \[0, 9\)"),
    ("mixed device", _with(item_weight=lambda a: a["item_weight"].to("meta")), ValueError, "item_weight is on meta"),
    ("temperature zero", _with(temperature=0.0), ValueError, "temperature must be finite and > 0"),
    ("temperature negative", _with(temperature=-0.1), ValueError, "temperature"),
    ("temperature nan", _with(temperature=float("nan")), ValueError, "temperature"),
    ("temperature tensor", _with(temperature=torch.tensor(0.1)), TypeError, "temperature must be a float"),
    ("reduction", _with(reduction="avg"), ValueError, "unknown reduction 'avg'"),
    ("ignore_index float", _with(ignore_index=-1.0), TypeError, "ignore_index must be an int"),
    ("backend", _with(backend="cutlass"), ValueError, "unknown backend 'cutlass'"),
    ("backend type", _with(backend=None), TypeError, "backend must be a string"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
@pytest.mark.parametrize("backend", ["auto", "torch", "torch-chunked", "triton"])
def test_bad_input_is_rejected(kwargs: dict, error: type, match: str, backend: str) -> None:
    kwargs = {"backend": backend, **kwargs}
    with pytest.raises(error, match=match):
        full_catalog_cross_entropy(kwargs.pop("query"), kwargs.pop("item_weight"), kwargs.pop("targets"), **kwargs)


def test_auto_picks_torch_chunked_on_cpu() -> None:
    from tedrec_fast.ops.dispatch import Problem, choose_backend
    from tedrec_fast.ops.full_catalog_ce.op import BACKENDS

    problem = Problem(torch.device("cpu"), torch.float32, (("B", 2), ("V", 3), ("d", 4)))
    assert choose_backend(BACKENDS, "auto", problem, op="x").name == "torch-chunked"
    listed = tedrec_fast.backends()["full_catalog_cross_entropy"]
    assert [b["name"] for b in listed] == ["triton", "torch-chunked", "torch"]
    assert all(b["available"] for b in listed[1:])


def test_triton_on_cpu_without_interpreter_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    args = _good()
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        full_catalog_cross_entropy(args["query"], args["item_weight"], args["targets"], backend="triton")


@pytest.mark.parametrize("backend", ["auto", "torch-chunked", "triton", "torch"])
def test_defaults_are_tedrec_loss(backend: str, device: str) -> None:
    args = {k: v.to(device) for k, v in _good().items()}
    got = full_catalog_cross_entropy(args["query"], args["item_weight"], args["targets"], backend=backend)
    q, c = (torch.nn.functional.normalize(args[k].cpu(), dim=-1) for k in ("query", "item_weight"))
    want = torch.nn.functional.cross_entropy(q @ c.t() / 0.07, args["targets"].cpu())
    torch.testing.assert_close(got.cpu(), want)


@pytest.mark.parametrize("backend", ["torch-chunked", "triton"])
def test_autocast_casts_to_autocast_dtype(backend: str, device: str) -> None:
    args = {k: v.to(device) for k, v in _good().items()}
    with torch.autocast(device, dtype=torch.bfloat16):
        got = full_catalog_cross_entropy(args["query"], args["item_weight"], args["targets"], backend=backend)
    want = full_catalog_cross_entropy_reference(args["query"].bfloat16().cpu(), args["item_weight"].bfloat16().cpu(),
                                                args["targets"].cpu())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)


class _TinyRecommender(nn.Module):
    def __init__(self, n_items: int, d: int, backend: str) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items, d)  # no zero row: its ~1e12 gradient amplifies rounding
        self.proj = nn.Linear(d, d)
        self.backend = backend

    def forward(self, seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        query = self.proj(self.items(seq).mean(1))
        return full_catalog_cross_entropy(query, self.items.weight, target, backend=self.backend)


@pytest.mark.parametrize("backend", ["torch-chunked", "triton"])
def test_torch_compile_fullgraph_matches_eager(backend: str, device: str) -> None:
    torch._dynamo.reset()
    model = _TinyRecommender(40, 16, backend).to(device)
    seq = torch.randint(0, 40, (6, 5), device=device)
    target = torch.randint(0, 40, (6,), device=device)
    target[0] = -100
    eager_loss = model(seq, target)
    eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
    # aot_eager: traces forward and backward graphs through the fake and autograd registrations
    # without inductor's code generation (slow on CPU); the models' tests compile with inductor
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss = compiled(seq, target)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, eager_loss)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b)
