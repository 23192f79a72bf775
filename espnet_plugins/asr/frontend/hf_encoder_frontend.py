"""A pretrained Hugging Face speech encoder (Whisper, wav2vec 2.0 / MMS / HuBERT / WavLM), frozen, as the frontend."""
import logging
from typing import Optional, Tuple, Union

import humanfriendly
import torch
from typeguard import typechecked

from espnet2.asr.frontend.abs_frontend import AbsFrontend


class HFEncoderFrontend(AbsFrontend):
    """The SMEAR-MoE paper's setting on a real pretrained encoder: its hidden states are the
    features of a projector (``preencoder: smear_moe``) and a light encoder / CTC head.

    ``model`` is a local directory written by ``save_pretrained`` (model + feature
    extractor) or a hub id (then the hub's cache, ``download_dir``, must hold it: this
    project runs offline, nothing is downloaded at training time). Whisper models use
    their encoder on the feature extractor's 30 s log-mel input (ESPnet's own
    ``huggingface`` frontend rejects Whisper; its ``whisper`` frontend needs the
    ``openai-whisper`` package and named checkpoints); waveform models (wav2vec 2.0, MMS,
    HuBERT, WavLM) get the samples, normalised per utterance as their feature extractor
    does. Output lengths come from the model's own frame arithmetic, so padded frames
    are cut off. With ``freeze`` (default) the encoder has no gradient, stays in ``eval``
    mode (no dropout / LayerDrop) when the parent trains, and runs under ``no_grad``.

    Args:
        model: Directory or hub id of a ``transformers`` speech model.
        fs: Sampling rate of the input; must be the feature extractor's.
        download_dir: Hub cache directory (``cache_dir``) for hub ids.
        freeze: Keep the pretrained weights fixed.
        layer: Hidden state to return (-1: the last; k: the output of layer k, 0 = the
            input embeddings), as SSL features are often better from a middle layer.
        load_pretrained: False builds the architecture from the config only (the parent
            checkpoint then supplies the weights).
    """

    @typechecked
    def __init__(
        self,
        model: str,
        fs: Union[int, str] = 16000,
        download_dir: Optional[str] = None,
        freeze: bool = True,
        layer: int = -1,
        load_pretrained: bool = True,
    ):
        super().__init__()
        try:
            from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
        except ImportError:
            raise ImportError("frontend: hf_encoder needs `pip install transformers` "
                              "(tools/requirements.txt lists it)") from None
        config = AutoConfig.from_pretrained(model, cache_dir=download_dir)
        net = AutoModel.from_pretrained(model, cache_dir=download_dir) if load_pretrained else \
            AutoModel.from_config(config)
        self.is_whisper = config.model_type == "whisper"
        self.encoder = net.get_encoder() if self.is_whisper else net
        self.processor = AutoFeatureExtractor.from_pretrained(model, cache_dir=download_dir)
        fs = humanfriendly.parse_size(fs) if isinstance(fs, str) else fs
        if fs != self.processor.sampling_rate:
            raise ValueError(f"fs={fs} but {model} expects {self.processor.sampling_rate} Hz audio; resample the "
                             f"data (format stage --fs) or set frontend_conf.fs")
        if not self.is_whisper and not hasattr(self.encoder, "_get_feat_extract_output_lengths"):
            raise ValueError(f"{model}: {type(self.encoder).__name__} is neither Whisper nor a waveform encoder "
                             f"(wav2vec 2.0 / HuBERT / WavLM / MMS); frontend: hf_encoder cannot use it")
        self.fs, self.freeze, self.layer = fs, freeze, layer
        self._size = config.d_model if self.is_whisper else config.hidden_size
        if freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        logging.info(f"HFEncoderFrontend: {type(self.encoder).__name__} from {model} "
                     f"({sum(p.numel() for p in self.encoder.parameters()) / 1e6:.1f} M parameters, "
                     f"{'frozen' if freeze else 'trained'}), layer {layer}, output size {self._size}")

    def output_size(self) -> int:
        return self._size

    def train(self, mode: bool = True) -> "HFEncoderFrontend":
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def _hidden(self, out) -> torch.Tensor:
        return out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]

    def _whisper(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self.processor([a[:n].float().cpu().numpy() for a, n in zip(x, lengths)], sampling_rate=self.fs,
                               return_tensors="pt").input_features.to(x.device, dtype=next(self.encoder.parameters()).dtype)
        out = self.encoder(feats, output_hidden_states=self.layer != -1)
        hop = self.processor.hop_length
        olens = torch.clamp((lengths // hop + 1) // 2, max=out.last_hidden_state.size(1))  # conv stride 2
        return self._hidden(out)[:, : int(olens.max())], olens

    def _waveform(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mask = torch.arange(x.size(1), device=x.device)[None, :] < lengths[:, None]
        x = x.float() * mask
        if getattr(self.processor, "do_normalize", False):  # zero mean, unit variance per utterance
            n = lengths[:, None].clamp(min=1)
            mean = x.sum(1, keepdim=True) / n
            var = (((x - mean) * mask) ** 2).sum(1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-7) * mask
        attn = mask.long() if getattr(self.processor, "return_attention_mask", False) else None
        out = self.encoder(x, attention_mask=attn, output_hidden_states=self.layer != -1)
        olens = self.encoder._get_feat_extract_output_lengths(lengths).long()
        return self._hidden(out)[:, : int(olens.max())], olens

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if input.dim() == 3:  # (B, T, C) from ESPnet's noise/RIR preprocessor: first channel
            input = input[..., 0]
        run = self._whisper if self.is_whisper else self._waveform
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            feats, olens = run(input, input_lengths)
        return feats, olens
