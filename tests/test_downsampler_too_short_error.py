"""The SMEAR projector's downsampler raises ESPnet's TooShortUttError with the numbers ESPnet's
decoders read (``actual_size``, ``limit``), not only in the message (issue 32: mutants that
dropped them survived)."""
import pytest
import torch
from espnet2.legacy.nets.pytorch_backend.transformer.subsampling import TooShortUttError

from espnet_plugins.asr.preencoder.conv1d_downsampler import Conv1dDownsampler


def test_too_short_error_carries_the_shortest_length_and_the_rate():
    down = Conv1dDownsampler(4, downsample_rate=5)
    with pytest.raises(TooShortUttError) as err:
        down(torch.zeros(3, 7, 4), torch.tensor([7, 4, 6]))
    assert err.value.actual_size == 4 and err.value.limit == 5
    assert isinstance(err.value, ValueError)
