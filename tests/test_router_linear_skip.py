"""TDNN router with ``linear_skip``: its logits = the TDNN's + a linear read-out's."""
import pytest
import torch

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.asr.moe.language_router import LanguageRouter

torch.set_num_threads(1)


def test_logits_are_tdnn_plus_linear_readout_of_the_normalised_input():
    torch.manual_seed(0)
    router = LanguageRouter(12, 3, "tdnn", channels=8, linear_skip=True).eval()
    x = torch.randn(2, 10, 12)
    valid = torch.arange(10)[None] < torch.tensor([10, 6])[:, None]
    with_skip = router(x, valid)
    skip = router.skip
    router.skip = None
    without = router(x, valid)
    router.skip = skip
    expected = without + skip(router.norm_in(x))
    assert torch.allclose(with_skip, expected, atol=1e-6)
    # Still padding invariant: utterance 2 alone gives its valid frames' logits.
    alone = router(x[1:, :6], valid[1:, :6])
    assert torch.allclose(alone[0], with_skip[1, :6], atol=1e-5)


def test_skip_gets_gradient_and_is_off_by_default():
    torch.manual_seed(0)
    router = LanguageRouter(12, 3, "tdnn", channels=8, linear_skip=True)
    router(torch.randn(1, 7, 12), torch.ones(1, 7, dtype=torch.bool)).logsumexp(-1).sum().backward()
    assert router.skip.weight.grad.abs().sum() > 0
    assert LanguageRouter(12, 3, "tdnn", channels=8).skip is None


def test_encoder_passes_it_and_linear_router_refuses_it():
    enc = BLRMoEEncoder(8, output_size=16, attention_heads=2, linear_units=32, num_shared_blocks=1,
                        num_moe_blocks=1, num_experts=2, router_channels=8, input_layer="linear",
                        router_linear_skip=True)
    assert isinstance(enc.router.skip, torch.nn.Linear)
    with pytest.raises(ValueError, match="drop linear_skip"):
        LanguageRouter(12, 3, "linear", linear_skip=True)
