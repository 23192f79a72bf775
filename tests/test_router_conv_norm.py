"""TDNN router ``conv_norm``: LayerNorm (default), masked BatchNorm or no norm per layer."""
import pytest
import torch

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.asr.moe.language_router import LanguageRouter

torch.set_num_threads(1)


def _manual_logits(router, x, valid, norm):
    h = router.norm_in(x)
    for conv in router.convs:
        h = h.masked_fill(~valid.unsqueeze(-1), 0.0)
        h = norm(router.activation(conv(h.transpose(1, 2)).transpose(1, 2)))
    return router.output(h)


def test_none_is_the_tdnn_without_norms_and_layer_norm_is_the_default():
    torch.manual_seed(0)
    router = LanguageRouter(12, 3, "tdnn", channels=8, conv_norm="none").eval()
    x = torch.randn(2, 10, 12)
    valid = torch.arange(10)[None] < torch.tensor([10, 6])[:, None]
    expected = _manual_logits(router, x, valid, lambda h: h)
    assert torch.allclose(router(x, valid), expected, atol=1e-6)
    assert not any("conv_norms" in k for k in router.state_dict())
    default = LanguageRouter(12, 3, "tdnn", channels=8).eval()
    # old checkpoints keep their keys: one LayerNorm (weight, bias) per TDNN layer
    assert sorted(k for k in default.state_dict() if "conv_norms" in k) == [
        f"conv_norms.{i}.{p}" for i in range(3) for p in ("bias", "weight")
    ]
    h = default.norm_in(x)
    for conv, norm in zip(default.convs, default.conv_norms):
        h = h.masked_fill(~valid.unsqueeze(-1), 0.0)
        h = norm(default.activation(conv(h.transpose(1, 2)).transpose(1, 2)))
        assert torch.allclose(h.mean(-1), torch.zeros_like(h.mean(-1)), atol=1e-5)
    assert torch.allclose(default(x, valid), default.output(h), atol=1e-6)


def test_batch_norm_statistics_ignore_padding_and_are_per_channel():
    torch.manual_seed(0)
    router = LanguageRouter(12, 3, "tdnn", channels=8, conv_norm="batch_norm", dropout_rate=0.0)
    x = torch.randn(2, 10, 12)
    lengths = torch.tensor([10, 6])
    valid = torch.arange(10)[None] < lengths[:, None]
    padded = router(x, valid)
    # the same batch with more padding: valid frames' logits and running stats unchanged
    stats = router.conv_norms[0].running_mean.clone()
    router.conv_norms[0].reset_running_stats()
    x_more = torch.cat([x, torch.randn(2, 5, 12) * 100], 1)
    valid_more = torch.arange(15)[None] < lengths[:, None]
    more = router(x_more, valid_more)
    assert torch.allclose(more[:, :10][valid], padded[valid], atol=1e-5)
    assert torch.allclose(router.conv_norms[0].running_mean, stats, atol=1e-6)
    # train mode: each channel of the first layer is zero-mean over the valid frames
    h = router.norm_in(x).masked_fill(~valid.unsqueeze(-1), 0.0)
    h = router.activation(router.convs[0](h.transpose(1, 2)))
    from espnet_plugins.asr.moe.masked_convolution import masked_batch_norm
    y = masked_batch_norm(router.conv_norms[0], h, valid).transpose(1, 2)[valid]
    assert torch.allclose(y.mean(0), router.conv_norms[0].bias, atol=1e-5)
    assert y.mean(0).abs().max() < 1e-5


def test_encoder_passes_it_and_bad_values_say_what_is_allowed():
    enc = BLRMoEEncoder(8, output_size=16, attention_heads=2, linear_units=32, num_shared_blocks=1,
                        num_moe_blocks=1, num_experts=2, router_channels=8, input_layer="linear",
                        router_conv_norm="none")
    assert all(isinstance(n, torch.nn.Identity) for n in enc.router.conv_norms)
    with pytest.raises(ValueError, match="'layer_norm', 'batch_norm' or 'none'"):
        LanguageRouter(12, 3, "tdnn", conv_norm="rms")
