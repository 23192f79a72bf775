"""masked_batch_norm applies BatchNorm's affine map (weight, bias) like the stock module; the
masked convolution module names an even kernel as the problem (issue 32: a mutant dividing by
the weight survived, as every test kept the initial weight 1)."""
import pytest
import torch

from espnet_plugins.asr.moe.masked_convolution import MaskedConvolutionModule, masked_batch_norm


@pytest.mark.parametrize("training", [True, False])
def test_without_padding_it_equals_the_stock_batch_norm_with_a_learnt_affine_map(training):
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 2.0, -1.5, 3.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 1.0]))
        bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.0, 0.5]))
        bn.running_var.copy_(torch.tensor([1.5, 0.5, 2.0, 1.0]))
    stock = torch.nn.BatchNorm1d(4)
    stock.load_state_dict(bn.state_dict())
    bn.train(training), stock.train(training)
    x = torch.randn(3, 4, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = masked_batch_norm(bn, x, torch.ones(3, 7, dtype=torch.bool))
        torch.testing.assert_close(out, stock(x))


def test_an_even_kernel_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"cnn_module_kernel must be odd \('same' padding\), got 4"):
        MaskedConvolutionModule(8, 4)
