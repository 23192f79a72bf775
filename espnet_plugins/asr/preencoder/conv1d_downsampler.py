"""Shared Conv1D downsampler in front of the SMEAR-MoE projector experts."""
from typing import Tuple

import torch
from espnet2.legacy.nets.pytorch_backend.transformer.subsampling import TooShortUttError
from typeguard import typechecked


class TooShortForDownsamplingError(TooShortUttError, ValueError):
    """ESPnet's too-short error (its decoders return an empty result for such input);
    also a ``ValueError``, which this module raised before."""


class Conv1dDownsampler(torch.nn.Module):
    """Conv1d(k=3, s=1) -> ReLU -> Conv1d(k=r, stride=r) -> ReLU, padding-invariant.

    The layout follows the SMEAR-MoE authors' projector. Unlike a plain ``nn.Conv1d``
    stack, a valid output frame never depends on how much padding the batch added:
    frames beyond each utterance's length are zeroed before the ``k=3`` convolution (so
    it sees zeros past the last frame, exactly as its own zero padding gives an
    utterance that is alone in its batch), and the strided convolution has no padding,
    so output frame ``j`` covers only input frames ``[j*r, j*r + r)``. An utterance of
    ``L`` frames yields exactly ``L // r`` frames (a trailing partial window is
    dropped); output frames past that are zero.

    Args:
        channels: Feature dimension of input and output.
        downsample_rate: Time reduction ``r`` (1 keeps the frame rate).
    """

    @typechecked
    def __init__(self, channels: int, downsample_rate: int = 1):
        super().__init__()
        if downsample_rate < 1:
            raise ValueError(f"downsample_rate must be >= 1, got {downsample_rate}")
        self.downsample_rate = downsample_rate
        self.smooth = torch.nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.reduce = torch.nn.Conv1d(
            channels, channels, kernel_size=downsample_rate, stride=downsample_rate
        )

    def output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """Exact number of output frames per utterance: ``L // downsample_rate``."""
        return torch.div(input_lengths, self.downsample_rate, rounding_mode="floor")

    def forward(
        self, xs: torch.Tensor, ilens: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Downsample ``xs`` [B, T, C] with lengths ``ilens`` [B].

        Returns [B, T // r, C] (padded frames zero) and the output lengths [B].
        """
        olens = self.output_lengths(ilens)
        if bool((olens < 1).any()):
            shortest = int(ilens.min())
            raise TooShortForDownsamplingError(
                f"An utterance of {shortest} frames is shorter than downsample_rate="
                f"{self.downsample_rate}; filter out short utterances or lower the "
                "rate.",
                shortest,
                self.downsample_rate,
            )
        frames = torch.arange(xs.size(1), device=xs.device)
        valid = (frames < ilens.unsqueeze(1)).to(xs.dtype)  # [B, T]
        x = (xs * valid.unsqueeze(2)).transpose(1, 2)  # [B, C, T]: channels first
        x = torch.relu(self.smooth(x))
        # No mask needed here: a kept stride window [j*r, j*r + r) lies inside the
        # utterance, so the nonzero values at padded positions never reach it.
        x = torch.relu(self.reduce(x))
        valid = (frames[: x.size(2)] < olens.unsqueeze(1)).to(x.dtype)
        # Frames-first and contiguous, so the expert GEMMs read rows without a copy.
        return (x * valid.unsqueeze(1)).transpose(1, 2).contiguous(), olens
