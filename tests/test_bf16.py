"""bf16 autocast on the CPU: every shipped preset's training forward + backward under
``torch.autocast("cpu", dtype=torch.bfloat16)`` matches fp32.

The same weights and batch (2 utterances of noise, one padded) run once in fp32 and once
under bf16 autocast, in training mode with dropout and SpecAugment off (so both runs
compute the same function). This exercises, in bf16, the token dispatch and grouped
expert matmuls (custom autograd functions), the SMEAR merge, the language router and
its LID loss, the load-balancing loss and CTC. Stated tolerances:

* every loss term reported in ``stats`` (``loss``, ``loss_ctc``, ``loss_lid``,
  ``loss_load_balance`` ...): ``|bf16 - fp32| <= LOSS_RTOL * |fp32| + LOSS_ATOL``
  (2 % + 1e-3). Under autocast ESPnet's CTC returns its loss in the encoder's dtype, so
  the reported terms are bf16 numbers: at a loss of ~70 one bf16 ulp is 0.5 (0.7 %),
  and 2 % is ~3 ulps; the absolute floor covers the near-zero load-balancing loss;
* the whole gradient (every trainable parameter, one vector, compared in float64):
  cosine similarity with the fp32 gradient >= ``GRAD_COS`` (0.99) and relative norm
  error <= ``GRAD_RTOL`` (0.15);
* master weights stay fp32: every parameter and its gradient is float32 after the
  bf16 backward (autocast casts copies for the matmuls, never the weights).

``python -m pytest tests/test_bf16.py -s`` prints the measured differences per preset.
"""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_cuda", ROOT / "bench" / "bench_cuda.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

LOSS_RTOL = 0.02
LOSS_ATOL = 1e-3
GRAD_COS = 0.99
GRAD_RTOL = 0.15
PRESETS = [p.stem[len("train_"):] for p in bench.PRESETS]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bf16")
    (tmp / "tokens.txt").write_text("\n".join(bench.TOKENS) + "\n", encoding="utf-8")
    (tmp / "langs").write_text("\n".join(bench.LANGS) + "\n", encoding="utf-8")
    return tmp


def _deterministic(model):
    """Training mode without randomness: dropout off, SpecAugment off."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    if getattr(model, "specaug", None) is not None:
        model.specaug = None
    return model


def _step(model, batch, bf16: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, stats, _ = model(**batch)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    terms = {k: float(v) for k, v in stats.items() if v is not None and k.startswith("loss")}
    return float(loss.detach()), terms, grads


def compare(preset: str, workdir: Path) -> dict:
    model, _ = bench.build(ROOT / "conf" / f"train_{preset}.yaml", workdir)
    _deterministic(model)
    batch = bench.make_batch(2, 1.0, 0, "cpu")
    loss32, terms32, g32 = _step(model, batch, bf16=False)
    loss16, terms16, g16 = _step(model, batch, bf16=True)
    assert sorted(g32) == sorted(g16)
    a = torch.cat([g32[n].flatten() for n in sorted(g32)]).double()
    b = torch.cat([g16[n].flatten() for n in sorted(g16)]).double()
    return {
        "loss_fp32": loss32, "loss_bf16": loss16,
        "terms_fp32": terms32, "terms_bf16": terms16,
        "grad_cos": float(torch.nn.functional.cosine_similarity(a, b, dim=0)),
        "grad_rel_err": float((a - b).norm() / a.norm().clamp(min=1e-12)),
        "dtypes": {p.dtype for p in model.parameters()} | {g.dtype for g in g16.values()},
        "finite": math.isfinite(loss16) and bool(torch.isfinite(b).all()),
    }


@pytest.mark.parametrize("preset", PRESETS)
def test_bf16_autocast_matches_fp32(preset, workdir):
    r = compare(preset, workdir)
    print(f"\n{preset}: loss fp32 {r['loss_fp32']:.4f} bf16 {r['loss_bf16']:.4f}; "
          + ", ".join(f"{k} {v:.5g}/{r['terms_bf16'][k]:.5g}" for k, v in r["terms_fp32"].items())
          + f"; grad cos {r['grad_cos']:.4f} rel err {r['grad_rel_err']:.3f}")
    assert r["finite"]
    assert r["dtypes"] == {torch.float32}  # master weights and their gradients
    assert "loss" in r["terms_fp32"] and sorted(r["terms_fp32"]) == sorted(r["terms_bf16"])
    for k, v in r["terms_fp32"].items():
        assert abs(r["terms_bf16"][k] - v) <= LOSS_RTOL * abs(v) + LOSS_ATOL, (k, v, r["terms_bf16"][k])
    assert r["grad_cos"] >= GRAD_COS and r["grad_rel_err"] <= GRAD_RTOL, r


def test_grouped_linear_runs_in_bf16_under_autocast():
    """The custom expert matmul casts like F.linear: bf16 output, fp32 weight gradient."""
    from espnet_plugins.asr.moe.dispatch import DispatchPlan, grouped_linear

    x = torch.randn(5, 8)
    w = torch.randn(3, 8, 4, requires_grad=True)
    plan = DispatchPlan.build(torch.tensor([0, 2, 2, 0, 2]), 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = grouped_linear(plan.gather(x), w, None, plan)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert w.grad.dtype == torch.float32 and torch.count_nonzero(w.grad[1]) == 0
