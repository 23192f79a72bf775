"""The grouped-GEMM expert matmul (``torch.nn.functional.grouped_mm``) against the
per-expert loop, and the rule that picks between them.

On the CPU, ``grouped_mm`` mode runs PyTorch's reference grouped-GEMM kernel (fp32), so
the fast path's own code (offsets, bias, the three grouped products of forward and
backward, zeroed gradients of empty experts) is checked against the loop here, on every
machine. The CUDA test compares the bf16 kernel on a GPU (SM >= 80) with the loop; CI has
no GPU by design, so there it is skipped (``bench/device_check.sh`` runs it on a GPU).
"""
import pytest
import torch

from espnet_plugins.asr.moe import dispatch
from espnet_plugins.asr.moe.dispatch import (
    DispatchPlan,
    dense_oracle_expert_linear,
    grouped_linear,
    grouped_mm_applies,
    grouped_mm_mode,
)
from espnet_plugins.asr.moe.moe_feed_forward import MoEFeedForward

E, D_IN, D_OUT = 4, 16, 24


def _case(seed: int, dtype=torch.float32, device="cpu", top_k: int = 1):
    """[3, 7] tokens, expert 1 never chosen (an empty expert), the last utterance padded."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 7, D_IN, generator=g)
    weight = torch.randn(E, D_IN, D_OUT, generator=g) / D_IN**0.5
    bias = torch.randn(E, D_OUT, generator=g)
    choices = torch.tensor([0, 2, 3])
    shape = (3, 7) if top_k == 1 else (3, 7, top_k)
    index = choices[torch.randint(0, 3, shape, generator=g)]
    gate = None if top_k == 1 else torch.rand(shape, generator=g)
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[2, 5:] = False
    out = [t.to(device) for t in (x, weight, bias, index)]
    out[:3] = [t.to(dtype) for t in out[:3]]
    return (*out, None if gate is None else gate.to(device), valid.to(device))


def _run(mode, x, weight, bias, index, gate, valid, grad_seed=9):
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    bias = None if bias is None else bias.clone().requires_grad_()
    plan = DispatchPlan.build(index, E, gate=gate, valid=valid)
    with grouped_mm_mode(mode):
        y = plan.scatter(grouped_linear(plan.gather(x), weight, bias, plan))
    g = torch.Generator().manual_seed(grad_seed)
    y.backward(torch.randn(y.shape, generator=g).to(y))
    return plan, y.detach(), x.grad, weight.grad, None if bias is None else bias.grad


@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("with_bias", [True, False])
def test_grouped_mm_equals_the_loop_forward_and_backward(top_k, with_bias):
    x, weight, bias, index, gate, valid = _case(0, top_k=top_k)
    bias = bias if with_bias else None
    plan, *loop = _run("loop", x, weight, bias, index, gate, valid)
    assert plan.empty_experts == [1] and plan.num_rows == (21 - 2) * top_k
    _, *grouped = _run("grouped_mm", x, weight, bias, index, gate, valid)
    for name, a, b in zip(("y", "grad x", "grad weight", "grad bias"), loop, grouped):
        if a is None:
            assert b is None
            continue
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (name, (a - b).abs().max())
    if top_k == 1:  # and both equal the dense oracle
        oracle = dense_oracle_expert_linear(x, weight, bias, index, valid)
        assert torch.allclose(grouped[0], oracle, atol=1e-5)


def test_an_expert_without_tokens_gets_a_zero_gradient_not_none():
    """What DDP (find_unused_parameters=False) needs: the empty expert's slice of the
    stacked weight has a gradient, exactly zero, on both paths."""
    x, weight, bias, index, gate, valid = _case(1)
    for mode in ("loop", "grouped_mm"):
        plan, _, _, grad_w, grad_b = _run(mode, x, weight, bias, index, gate, valid)
        assert plan.empty_experts == [1]
        assert grad_w is not None and grad_b is not None
        assert torch.count_nonzero(grad_w[1]) == 0 and torch.count_nonzero(grad_b[1]) == 0
        assert all(torch.count_nonzero(grad_w[e]) > 0 for e in (0, 2, 3))


def test_the_grouped_kernel_runs_in_grouped_mm_mode_and_the_loop_in_loop_mode(monkeypatch):
    calls = []
    real = dispatch._GroupedMMLinear.apply
    monkeypatch.setattr(dispatch._GroupedMMLinear, "apply", lambda *a: calls.append(1) or real(*a))
    x, weight, bias, index, gate, valid = _case(2)
    _run("loop", x, weight, bias, index, gate, valid)
    _run("auto", x, weight, bias, index, gate, valid)  # CPU: the loop
    assert calls == []
    _run("grouped_mm", x, weight, bias, index, gate, valid)
    assert calls == [1]


def test_grouped_mm_applies_only_to_cuda_bf16_aligned_operands():
    x = torch.zeros(4, 16)
    w = torch.zeros(E, 16, 24)
    assert not grouped_mm_applies(x, w)  # CPU
    assert not grouped_mm_applies(x.bfloat16(), w.bfloat16())  # CPU, bf16
    if torch.cuda.is_available():
        xc, wc = x.cuda().bfloat16(), w.cuda().bfloat16()
        assert grouped_mm_applies(xc, wc) == (torch.cuda.get_device_capability() >= (8, 0))
        assert not grouped_mm_applies(xc.float(), wc.float())  # fp32: the loop
        assert not grouped_mm_applies(xc[:, :12], wc[:, :12])  # 24-byte rows


def test_mode_names_are_checked():
    with pytest.raises(ValueError, match="auto"):
        dispatch.set_grouped_mm("fast")


def test_moe_ffn_is_the_same_in_both_modes():
    """A whole expert FFN (two grouped linears in sorted order) in both modes, fp32."""
    torch.manual_seed(0)
    ffn = MoEFeedForward(E, D_IN, 32, dropout_rate=0.0)
    x = torch.randn(2, 9, D_IN)
    index = torch.randint(0, E - 1, (2, 9))  # expert E-1 empty
    out = {}
    for mode in ("loop", "grouped_mm"):
        ffn.zero_grad()
        plan = DispatchPlan.build(index, E)
        with grouped_mm_mode(mode):
            y = ffn(x, plan)
        y.square().sum().backward()
        out[mode] = (y.detach(), ffn.w_1.weight.grad.clone(), ffn.w_2.bias.grad.clone())
    for a, b in zip(out["loop"], out["grouped_mm"]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a - b).abs().max()
    assert torch.count_nonzero(out["grouped_mm"][1][E - 1]) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (CI has none by design; "
                    "bench/device_check.sh runs this test on a GPU)")
def test_cuda_bf16_grouped_kernel_equals_the_loop():
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("grouped_mm needs compute capability >= 8.0")
    x, weight, bias, index, gate, valid = _case(3, dtype=torch.bfloat16, device="cuda")
    ref = _run("loop", x, weight, bias, index, gate, valid)
    calls = []
    real = dispatch._GroupedMMLinear.apply
    dispatch._GroupedMMLinear.apply = lambda *a: calls.append(1) or real(*a)
    try:
        got = _run("auto", x, weight, bias, index, gate, valid)
    finally:
        dispatch._GroupedMMLinear.apply = real
    assert calls == [1]  # auto chose the grouped kernel
    for name, a, b in zip(("y", "grad x", "grad weight", "grad bias"), ref[1:], got[1:]):
        # bf16: both round their fp32 accumulations once; a few bf16 ulps apart
        assert torch.allclose(a.float(), b.float(), rtol=2e-2, atol=2e-2), (name, (a - b).abs().max())
    assert torch.count_nonzero(got[3][1]) == 0  # empty expert: zero weight gradient


def test_a_failing_grouped_kernel_falls_back_to_the_loop_in_auto_mode(monkeypatch, caplog):
    """auto mode: a grouped_mm the GPU / build lacks logs one warning and the loop takes
    over (same numbers); forced grouped_mm mode raises instead."""
    x, weight, bias, index, gate, valid = _case(4)
    _, *ref = _run("loop", x, weight, bias, index, gate, valid)

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image is available")

    monkeypatch.setattr(torch.nn.functional, "grouped_mm", broken)
    monkeypatch.setattr(dispatch, "grouped_mm_applies", lambda x, w: True)  # as on a GPU
    previous = dispatch.set_grouped_mm("auto")
    try:
        with caplog.at_level("WARNING"):
            _, *got = _run("auto", x, weight, bias, index, gate, valid)
        assert "per-expert loop" in caplog.text
    finally:
        dispatch.set_grouped_mm(previous)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="no kernel image"):
        _run("grouped_mm", x, weight, bias, index, gate, valid)
