"""The traced (ONNX export) dispatch plan equals the dense oracle for a layer without bias too,
as the second expert layer of an FFN uses it (issue 32: a mutant of the bias-free branch
survived: only a biased layer was checked)."""
import torch

from espnet_plugins.asr.moe.dispatch import dense_oracle_expert_linear, grouped_linear
from espnet_plugins.asr.moe.traced_dispatch import TracedDispatchPlan


def test_traced_plan_without_bias_equals_the_dense_oracle():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, generator=g)
    w = torch.randn(4, 5, 6, generator=g)
    index = torch.randint(0, 3, (3, 7), generator=g)  # expert 3 gets no token
    valid = torch.arange(7) < torch.tensor([7, 4, 1])[:, None]
    plan = TracedDispatchPlan(index, 4, valid)
    out = plan.scatter(grouped_linear(plan.gather(x), w, None, plan))
    torch.testing.assert_close(out, dense_oracle_expert_linear(x, w, None, index, valid))
