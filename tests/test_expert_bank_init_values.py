"""ExpertMLPBank's init by value: each expert layer is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) like
torch.nn.Linear, weights and biases alike, filling the whole range (issue 32: mutants of the
bound and of the range survived); ``zero_output`` zeroes the output layer only."""
import math

import pytest
import torch

from espnet_plugins.asr.preencoder.expert_mlp_bank import ExpertMLPBank


def _check_uniform(t, bound):
    t = t.detach()
    assert float(t.max()) <= bound and float(t.min()) >= -bound, (float(t.min()), float(t.max()), bound)
    # both ends reach 75 % of the bound (seeded; for 64 draws another seed fails with p < 4e-4)
    assert float(t.max()) > 0.75 * bound and float(t.min()) < -0.75 * bound, (float(t.min()), float(t.max()))


@pytest.mark.parametrize("zero_output", [False, True])
def test_each_layer_is_uniform_in_plus_minus_one_over_sqrt_fan_in(zero_output):
    torch.manual_seed(0)
    bank = ExpertMLPBank(4, input_size=64, hidden_size=16, output_size=36, zero_output=zero_output)
    _check_uniform(bank.w1, 1 / math.sqrt(64))
    _check_uniform(bank.b1, 1 / math.sqrt(64))
    if zero_output:
        assert not bank.w2.any() and not bank.b2.any()
    else:
        _check_uniform(bank.w2, 1 / math.sqrt(16))
        _check_uniform(bank.b2, 1 / math.sqrt(16))
    for e in range(4):  # every expert is drawn, not one copied
        assert not torch.equal(bank.w1[e], bank.w1[(e + 1) % 4])
