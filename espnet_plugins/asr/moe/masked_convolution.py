"""Conformer convolution module that does not see padded frames."""
import torch
from espnet2.legacy.nets.pytorch_backend.conformer.convolution import ConvolutionModule
from espnet2.legacy.nets.pytorch_backend.transformer.layer_norm import LayerNorm


def masked_batch_norm(
    bn: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """``bn(x)`` with the batch statistics taken over valid frames only.

    In training mode (or without running statistics) the mean and variance are
    computed over the frames where ``valid`` is True, and ``bn``'s running buffers are
    updated from them the way ``torch.nn.BatchNorm1d`` does (momentum or cumulative
    average, unbiased variance). In eval mode with running statistics this is
    ``bn(x)``. ``bn``'s own parameters and buffers are used, so state dicts are those
    of a plain ``BatchNorm1d``.

    Args:
        bn: BatchNorm1d over the channels of ``x``.
        x: [B, C, T].
        valid: BoolTensor [B, T], True on valid frames.

    Returns:
        [B, C, T]; padded frames are normalised with the valid frames' statistics.
    """
    use_batch_stats = bn.training or not bn.track_running_stats
    if not use_batch_stats:
        return bn(x)
    dtype = x.dtype
    x = x.float()  # statistics in float32, as BatchNorm does under autocast
    mask = valid.unsqueeze(1).to(x.dtype)  # [B, 1, T]
    count = mask.sum().clamp(min=1)
    mean = (x * mask).sum(dim=(0, 2)) / count
    var = ((x - mean[None, :, None]) * mask).pow(2).sum(dim=(0, 2)) / count
    if bn.training and bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:  # cumulative moving average, as in BatchNorm1d
                momentum = 1.0 / float(bn.num_batches_tracked)
            else:
                momentum = bn.momentum
            unbiased = var * (count / (count - 1).clamp(min=1))
            bn.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            bn.running_var.mul_(1 - momentum).add_(unbiased.detach(), alpha=momentum)
    y = (x - mean[None, :, None]) * torch.rsqrt(var + bn.eps)[None, :, None]
    if bn.affine:
        y = y * bn.weight[None, :, None] + bn.bias[None, :, None]
    return y.to(dtype)


class MaskedConvolutionModule(ConvolutionModule):
    """ESPnet's Conformer ``ConvolutionModule`` with padded frames zeroed before the
    depthwise convolution and kept out of the BatchNorm statistics.

    The stock module convolves over whatever sits in the padded frames (non-zero after
    the first pointwise conv's bias), so a frame near the end of an utterance changes
    with the amount of padding in its batch. Zeroing the padded frames makes the conv
    see exactly the zero padding it sees when the utterance is alone. In training,
    the BatchNorm's batch statistics (and so its running statistics) come from valid
    frames only (:func:`masked_batch_norm`): padded frames would otherwise pull them
    towards the conv's response to zero input, by an amount that depends on how much
    padding the batch has. Parameter and buffer names are the stock module's, so its
    checkpoints load unchanged; eval mode is the stock BatchNorm.

    Args:
        channels: model size.
        kernel_size: depthwise kernel size (odd).
        activation: activation module.
        norm: ``"batch_norm"`` (as in ESPnet/Conformer) or ``"layer_norm"`` (over
            channels, per frame: no running statistics, so batch composition and
            frozen-module fine-tuning never change it).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        activation: torch.nn.Module = torch.nn.ReLU(),
        norm: str = "batch_norm",
    ):
        if kernel_size % 2 != 1:
            raise ValueError(
                f"cnn_module_kernel must be odd ('same' padding), got {kernel_size}"
            )
        super().__init__(channels, kernel_size, activation)
        if norm == "layer_norm":
            self.norm = LayerNorm(channels, dim=1)
        elif norm != "batch_norm":
            raise ValueError(
                f"cnn_module_norm must be 'batch_norm' or 'layer_norm', got {norm!r}"
            )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Compute the convolution module.

        Args:
            x: [B, T, channels].
            valid: BoolTensor [B, T], True on valid frames.

        Returns:
            [B, T, channels].
        """
        x = x.transpose(1, 2)
        x = torch.nn.functional.glu(self.pointwise_conv1(x), dim=1)
        x = x.masked_fill(~valid.unsqueeze(1), 0.0)
        x = self.depthwise_conv(x)
        if isinstance(self.norm, torch.nn.modules.batchnorm._BatchNorm):
            x = masked_batch_norm(self.norm, x, valid)
        else:
            x = self.norm(x)
        x = self.activation(x)
        return self.pointwise_conv2(x).transpose(1, 2)
