"""The dispatch primitive (sort -> gather -> grouped matmul -> scatter) against the
dense "compute every expert, then select" oracle, forward and backward."""
import pytest
import torch

from espnet_plugins.asr.moe.dispatch import (
    DispatchPlan,
    dense_oracle_expert_linear,
    grouped_linear,
    route_fractions,
)
from espnet_plugins.asr.moe.expert_linear import ExpertLinear

torch.set_num_threads(1)
B, T, D_IN, D_OUT = 3, 7, 5, 6


def _params(num_experts, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D_IN, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(num_experts, D_IN, D_OUT, generator=g, dtype=torch.float64)
    b = torch.randn(num_experts, D_OUT, generator=g, dtype=torch.float64)
    return x, w.requires_grad_(), b.requires_grad_()


def _grads(out, upstream, *tensors):
    return torch.autograd.grad(out, tensors, upstream)


def _check_against_oracle(expert_index, num_experts, valid=None):
    x, w, b = _params(num_experts)
    plan = DispatchPlan.build(expert_index, num_experts, valid=valid)
    out = plan.scatter(grouped_linear(plan.gather(x), w, b, plan))
    ref = dense_oracle_expert_linear(x, w, b, expert_index, valid)
    torch.testing.assert_close(out, ref)
    upstream = torch.randn_like(ref)
    grads = _grads(out, upstream, x, w, b)
    for got, want in zip(grads, _grads(ref, upstream, x, w, b)):
        torch.testing.assert_close(got, want)
    return plan, grads


@pytest.mark.parametrize("num_experts", range(1, 9))
def test_random_routing_matches_oracle(num_experts):
    g = torch.Generator().manual_seed(num_experts)
    expert_index = torch.randint(0, num_experts, (B, T), generator=g)
    plan, _ = _check_against_oracle(expert_index, num_experts)
    counts = torch.bincount(expert_index.flatten(), minlength=num_experts)
    assert plan.sizes == counts.tolist()
    # Sorted buffer really is expert-contiguous.
    sorted_experts = expert_index.flatten()[plan.sorted_token]
    assert torch.equal(sorted_experts, torch.sort(expert_index.flatten()).values)


@pytest.mark.parametrize("num_experts", [2, 5, 8])
def test_empty_experts_get_zero_gradient(num_experts):
    used = torch.tensor([0, num_experts - 1])
    g = torch.Generator().manual_seed(1)
    expert_index = used[torch.randint(0, 2, (B, T), generator=g)]
    plan, (_, grad_w, grad_b) = _check_against_oracle(expert_index, num_experts)
    assert [e for e, *_ in plan.slices] == [0, num_experts - 1]
    assert grad_w[1:-1].abs().sum() == 0 and grad_b[1:-1].abs().sum() == 0


@pytest.mark.parametrize("expert", [0, 3])
def test_all_tokens_on_one_expert(expert):
    plan, _ = _check_against_oracle(torch.full((B, T), expert), 4)
    assert plan.sizes[expert] == B * T


def test_padding_tokens_are_not_routed():
    g = torch.Generator().manual_seed(2)
    expert_index = torch.randint(0, 3, (B, T), generator=g)
    valid = torch.arange(T) < torch.tensor([T, 4, 1]).unsqueeze(1)
    plan, _ = _check_against_oracle(expert_index, 3, valid)
    assert plan.num_rows == int(valid.sum())
    torch.testing.assert_close(route_fractions(plan).sum(), torch.tensor(1.0))


def test_two_layer_chain_stays_sorted():
    """FFN-MoE keeps rows sorted between its two linears; equals per-token oracle."""
    num_experts, hidden = 4, 9
    g = torch.Generator().manual_seed(3)
    x, w1, b1 = _params(num_experts)
    w2 = torch.randn(num_experts, D_OUT, hidden, generator=g, dtype=torch.float64)
    expert_index = torch.randint(0, num_experts, (B, T), generator=g)
    plan = DispatchPlan.build(expert_index, num_experts)
    h_sorted = torch.relu(grouped_linear(plan.gather(x), w1, b1, plan))
    out = plan.scatter(grouped_linear(h_sorted, w2, None, plan))
    h = torch.relu(dense_oracle_expert_linear(x, w1, b1, expert_index))
    ref = dense_oracle_expert_linear(h, w2, None, expert_index)
    torch.testing.assert_close(out, ref)


def test_top_k_gated_matches_oracle():
    num_experts, k = 5, 2
    x, w, b = _params(num_experts)
    g = torch.Generator().manual_seed(4)
    expert_index = torch.stack(
        [torch.randperm(num_experts, generator=g)[:k] for _ in range(B * T)]
    ).view(B, T, k)
    gate = torch.rand(B, T, k, generator=g, dtype=torch.float64).requires_grad_()
    plan = DispatchPlan.build(expert_index, num_experts, gate=gate)
    assert plan.num_rows == B * T * k
    out = plan.scatter(grouped_linear(plan.gather(x), w, b, plan))
    ref = sum(
        gate[..., j : j + 1] * dense_oracle_expert_linear(x, w, b, expert_index[..., j])
        for j in range(k)
    )
    torch.testing.assert_close(out, ref)
    upstream = torch.randn_like(ref)
    for got, want in zip(
        _grads(out, upstream, x, w, b, gate), _grads(ref, upstream, x, w, b, gate)
    ):
        torch.testing.assert_close(got, want)


def test_one_host_sync_per_plan(monkeypatch):
    """Building a plan syncs once; using it (fwd + bwd, several layers) never does."""
    calls = []
    for name in ("tolist", "item"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    layer = ExpertLinear(4, D_IN, D_IN)
    x = torch.randn(B, T, D_IN, requires_grad=True)
    plan = DispatchPlan.build(torch.randint(0, 4, (B, T)), 4)
    assert calls == ["tolist"]
    h = plan.gather(x)
    for _ in range(3):
        h = layer(h, plan)
    plan.scatter(h).sum().backward()
    assert calls == ["tolist"]


def test_expert_linear_init_and_dense_equivalence():
    """Expert e is nn.Linear(weight[e].T, bias[e]); init has nn.Linear's range."""
    layer = ExpertLinear(3, 64, 8)
    assert layer.weight.abs().max() <= 1 / 8 and layer.bias.abs().max() <= 1 / 8
    assert layer.weight.std() > 0.5 / (8 * 3**0.5)  # U(-1/8, 1/8) has std 1/(8*sqrt3)
    x = torch.randn(2, 5, 64)
    plan = DispatchPlan.build(torch.full((2, 5), 2), 3)
    dense = torch.nn.Linear(64, 8)
    with torch.no_grad():
        dense.weight.copy_(layer.weight[2].T)
        dense.bias.copy_(layer.bias[2])
    torch.testing.assert_close(plan.scatter(layer(plan.gather(x), plan)), dense(x))


def test_autocast_runs_in_autocast_dtype():
    layer = ExpertLinear(2, D_IN, D_OUT)
    x = torch.randn(B, T, D_IN)
    plan = DispatchPlan.build(torch.randint(0, 2, (B, T)), 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(plan.gather(x), plan)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float(), layer(plan.gather(x), plan), atol=0.05, rtol=0.05
    )


def test_bad_shapes_are_reported():
    plan = DispatchPlan.build(torch.zeros(B, T, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="token"):
        plan.gather(torch.randn(B, T + 1, D_IN))
    with pytest.raises(ValueError, match=r"\[E=2"):
        grouped_linear(
            torch.randn(B * T, D_IN), torch.randn(3, D_IN, D_OUT), None, plan
        )
