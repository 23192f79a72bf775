"""ExpertLinear by value: without bias it is x @ W_e per token, and ``replicate_init`` starts every
expert from expert 0's draw, bias included (issue 32: mutants of both survived)."""
import math

import torch

from espnet_plugins.asr.moe.dispatch import DispatchPlan
from espnet_plugins.asr.moe.expert_linear import ExpertLinear


def test_without_bias_each_token_gets_its_experts_matrix():
    torch.manual_seed(0)
    layer = ExpertLinear(3, 4, 5, bias=False)
    assert layer.bias is None
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 4, generator=g)
    index = torch.randint(0, 3, (2, 6), generator=g)
    plan = DispatchPlan.build(index, 3)
    out = plan.scatter(layer(plan.gather(x), plan))
    ref = torch.stack([torch.stack([x[b, t] @ layer.weight[index[b, t]] for t in range(6)]) for b in range(2)])
    torch.testing.assert_close(out, ref.detach())


def test_replicate_init_copies_expert_0_weights_and_bias_into_every_expert():
    torch.manual_seed(0)
    layer = ExpertLinear(4, 16, 8, replicate_init=True)
    bound = 1 / math.sqrt(16)
    for e in range(1, 4):
        assert torch.equal(layer.weight[e], layer.weight[0]) and torch.equal(layer.bias[e], layer.bias[0])
    assert float(layer.bias.detach().abs().max()) <= bound and float(layer.weight.detach().abs().max()) <= bound
    assert float(layer.weight.detach().abs().max()) > 0.75 * bound  # drawn, not left at zero
