"""Conformer convolution module that does not see padded frames."""
import torch
from espnet2.legacy.nets.pytorch_backend.conformer.convolution import ConvolutionModule
from espnet2.legacy.nets.pytorch_backend.transformer.layer_norm import LayerNorm


class MaskedConvolutionModule(ConvolutionModule):
    """ESPnet's Conformer ``ConvolutionModule`` with padded frames zeroed before the
    depthwise convolution.

    The stock module convolves over whatever sits in the padded frames (non-zero after
    the first pointwise conv's bias), so a frame near the end of an utterance changes
    with the amount of padding in its batch. Zeroing the padded frames makes the conv
    see exactly the zero padding it sees when the utterance is alone.

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
        x = self.activation(self.norm(self.depthwise_conv(x)))
        return self.pointwise_conv2(x).transpose(1, 2)
