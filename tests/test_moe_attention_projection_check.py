"""MoE attention names a bad ``expert_projections`` value and what is allowed (issue 32: a mutant
that dropped the message survived)."""
import pytest

from espnet_plugins.asr.moe.moe_attention import MoERelPositionMultiHeadedAttention


@pytest.mark.parametrize("projections", [("v", "x"), ("v", "v")])
def test_unknown_or_repeated_projection_is_refused_with_the_reason(projections):
    with pytest.raises(ValueError, match=r"distinct letters among q, k, v, o; got \['v', '[xv]'\]"):
        MoERelPositionMultiHeadedAttention(2, 8, 0.0, num_experts=2, expert_projections=projections)
