"""MaskedConvolutionModule: padded frames stay out of the conv and the BatchNorm statistics."""
import pytest
import torch
from espnet2.legacy.nets.pytorch_backend.conformer.convolution import ConvolutionModule

from espnet_plugins.asr.moe.masked_convolution import MaskedConvolutionModule

torch.set_num_threads(1)
C, K = 8, 5


def module(seed=0, **kw):
    torch.manual_seed(seed)
    return MaskedConvolutionModule(C, K, torch.nn.SiLU(), **kw)


def batch(lengths, pad_to=None, seed=1):
    """x [B, T, C] with random (non-zero) values in the padded frames, valid [B, T]."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    x = torch.randn(len(lengths), T, C, generator=g)
    if pad_to is not None:
        x = torch.cat([x, 5 + torch.randn(len(lengths), pad_to - T, C, generator=g)], dim=1)
    valid = torch.arange(x.size(1))[None, :] < torch.tensor(lengths)[:, None]
    return x, valid


def test_training_statistics_and_output_ignore_extra_padding():
    lengths = [20, 13]
    x, valid = batch(lengths)
    x_pad, valid_pad = batch(lengths, pad_to=37)
    torch.testing.assert_close(x_pad[:, :20], x)
    short, padded = module().train(), module().train()
    out = short(x, valid)
    out_pad = padded(x_pad, valid_pad)
    bn, bn_pad = short.norm, padded.norm
    torch.testing.assert_close(bn_pad.running_mean, bn.running_mean)
    torch.testing.assert_close(bn_pad.running_var, bn.running_var)
    assert int(bn_pad.num_batches_tracked) == int(bn.num_batches_tracked) == 1
    for i, n in enumerate(lengths):
        torch.testing.assert_close(out_pad[i, :n], out[i, :n])


def test_without_padding_it_is_the_stock_module_in_train_and_eval():
    """Same parameters and buffer names as ESPnet's module: its checkpoints load strictly,
    and with every frame valid the output and running statistics are the stock ones."""
    torch.manual_seed(0)
    stock = ConvolutionModule(C, K, torch.nn.SiLU())
    ours = module(seed=3)
    ours.load_state_dict(stock.state_dict(), strict=True)
    x, valid = batch([16, 16])
    for mode in (True, False):
        stock.train(mode), ours.train(mode)
        for _ in range(2):  # twice: the second train step also uses the updated running stats
            torch.testing.assert_close(ours(x, valid), stock(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.norm.running_mean, stock.norm.running_mean)
        torch.testing.assert_close(ours.norm.running_var, stock.norm.running_var)


def test_eval_mode_uses_running_statistics_and_gradients_flow():
    conv = module().train()
    x, valid = batch([12, 7])
    x.requires_grad_(True)
    out = conv(x, valid)
    (out * valid[..., None]).sum().backward()
    assert conv.norm.weight.grad is not None and x.grad is not None
    conv.eval()
    mean = conv.norm.running_mean.clone()
    alone = conv(x[1:, :7].detach(), valid[1:, :7])
    batched = conv(x.detach(), valid)
    torch.testing.assert_close(batched[1, :7], alone[0])
    torch.testing.assert_close(conv.norm.running_mean, mean)  # eval never updates them


@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_statistics_follow_batchnorm_momentum(momentum):
    conv = module()
    conv.norm.momentum = momentum
    conv.train()
    x, valid = batch([9, 9])
    for _ in range(3):
        conv(x, valid)
    torch.manual_seed(0)
    stock = ConvolutionModule(C, K, torch.nn.SiLU())
    stock.load_state_dict(module().state_dict())
    stock.norm.momentum = momentum
    stock.train()
    for _ in range(3):
        stock(x)
    torch.testing.assert_close(conv.norm.running_var, stock.norm.running_var)
    assert int(conv.norm.num_batches_tracked) == 3


def test_layer_norm_variant_is_unchanged():
    conv = module(norm="layer_norm").train()
    x, valid = batch([10, 6])
    out = conv(x, valid)
    alone = conv(x[1:, :6], valid[1:, :6])
    torch.testing.assert_close(out[1, :6], alone[0])
