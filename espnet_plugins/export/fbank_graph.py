"""ESPnet's default log-mel frontend (+ global MVN) written with ONNX-exportable ops."""
from typing import Optional, Tuple

import torch
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.layers.global_mvn import GlobalMVN


class FbankGraph(torch.nn.Module):
    """``DefaultFrontend`` then ``GlobalMVN``, as one traceable module.

    ESPnet's ``Stft`` calls ``torch.stft(return_complex=True)``: complex tensors do
    not export to ONNX, and ONNX's own ``STFT`` op is missing or slow in several
    runtimes. Here the STFT is a strided ``Conv1d`` whose kernels are the windowed
    DFT basis (cosine and sine rows of the one-sided spectrum, computed in float64):
    the same frames, window and reflect padding as ``torch.stft`` (``center``), so
    the graph takes raw waveforms. Only the ``win_length`` taps where the (centred)
    window is non-zero are kept in the kernel. Then, as ESPnet: power spectrum,
    ``melmat`` (the frontend's own librosa filter bank), ``clamp(1e-10)``, log, and
    the global mean / std of ``normalize``; padded frames are zero.

    Output lengths are ESPnet's: ``(ilens + 2 * (n_fft // 2) - n_fft) // hop + 1``
    with ``center`` (without: ``(ilens - n_fft) // hop + 1``).

    Args:
        frontend: the model's ``DefaultFrontend`` (single channel, ``apply_stft``,
            no speech-enhancement frontend).
        normalize: the model's ``GlobalMVN`` or None.
    """

    def __init__(self, frontend: DefaultFrontend, normalize: Optional[GlobalMVN]):
        super().__init__()
        if not isinstance(frontend, DefaultFrontend):
            raise NotImplementedError(
                f"export supports frontend: default only, got {type(frontend).__name__}; "
                "export the encoder from features yourself or add its graph here"
            )
        enhancement = frontend.frontend
        if enhancement is not None and (enhancement.use_wpe or enhancement.use_beamformer):
            raise NotImplementedError("export does not support the WPE / beamformer frontend")
        stft = frontend.stft
        if stft is None:
            raise NotImplementedError("export needs frontend_conf.apply_stft: true (waveform input)")
        if not stft.onesided:
            raise NotImplementedError("export supports onesided: true STFTs only")
        if normalize is not None and not isinstance(normalize, GlobalMVN):
            raise NotImplementedError(
                f"export supports normalize: global_mvn or none, got {type(normalize).__name__}"
            )
        self.n_fft = n_fft = stft.n_fft
        self.hop_length = stft.hop_length
        self.center = stft.center
        win_length = stft.win_length
        if stft.window is not None:
            window = getattr(torch, f"{stft.window}_window")(win_length, dtype=torch.float64)
        else:
            window = torch.ones(win_length, dtype=torch.float64)
        # torch.stft centres a shorter window in the n_fft frame: taps outside are zero.
        self.window_offset = (n_fft - win_length) // 2
        taps = torch.arange(self.window_offset, self.window_offset + win_length, dtype=torch.float64)
        bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        # (k * n) mod N keeps the angles small, so cos/sin stay exact in float64.
        angle = 2 * torch.pi * torch.remainder(bins[:, None] * taps[None, :], n_fft) / n_fft
        scale = n_fft**-0.5 if stft.normalized else 1.0
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window * scale
        self.register_buffer("dft_kernel", basis.float().unsqueeze(1))  # [2F, 1, win_length]
        self.register_buffer("melmat", frontend.logmel.melmat.detach().clone())
        self.log_base = frontend.logmel.log_base
        self.num_bins = n_fft // 2 + 1
        self.normalize = normalize is not None
        if normalize is not None:
            self.norm_means, self.norm_vars = normalize.norm_means, normalize.norm_vars
            self.register_buffer("mean", normalize.mean.detach().float().clone())
            self.register_buffer("std", normalize.std.detach().float().clone())

    def output_lengths(self, ilens: torch.Tensor) -> torch.Tensor:
        """Frames of each utterance, as ESPnet's ``Stft`` counts them."""
        pad = 2 * (self.n_fft // 2) if self.center else 0
        return torch.div(ilens + pad - self.n_fft, self.hop_length, rounding_mode="trunc") + 1

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """speech [B, S] float, speech_lengths [B] -> features [B, T, n_mels], lengths [B]."""
        # As ESPnet's _extract_feats: the batch is cut to its longest utterance.
        speech = speech[:, : speech_lengths.max()]
        x = speech.unsqueeze(1)
        if self.center:
            x = torch.nn.functional.pad(x, (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        # Start at the first non-zero tap of each frame; the last frame ends on the
        # last non-zero tap, so the frame count is torch.stft's.
        width = x.size(2) - (self.n_fft - self.dft_kernel.size(2))
        x = x[:, :, self.window_offset : self.window_offset + width]
        spec = torch.nn.functional.conv1d(x, self.dft_kernel, stride=self.hop_length)
        real, imag = spec[:, : self.num_bins], spec[:, self.num_bins :]
        power = (real * real + imag * imag).transpose(1, 2)  # [B, T, F]
        mel = torch.clamp(torch.matmul(power, self.melmat), min=1e-10)
        if self.log_base is None:
            feats = mel.log()
        elif self.log_base == 2.0:
            feats = mel.log2()
        elif self.log_base == 10.0:
            feats = mel.log10()
        else:
            feats = mel.log() / torch.log(torch.tensor(float(self.log_base)))
        lengths = self.output_lengths(speech_lengths)
        valid = torch.arange(feats.size(1), device=feats.device)[None, :] < lengths[:, None]
        if self.normalize:
            if self.norm_means:
                feats = feats - self.mean
            if self.norm_vars:
                feats = feats / self.std
        return feats.masked_fill(~valid.unsqueeze(-1), 0.0), lengths
