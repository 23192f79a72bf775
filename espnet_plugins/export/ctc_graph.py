"""Waveform -> CTC log-probabilities of an ASR model, as one traceable module."""
import copy
from typing import Tuple

import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.asr.preencoder.smear_projector import SmearProjector
from espnet_plugins.export.fbank_graph import FbankGraph
from espnet_plugins.export.rel_positional_encoding import replace_rel_positional_encodings


class CTCGraph(torch.nn.Module):
    """frontend -> normalize -> [preencoder] -> encoder -> CTC log-softmax, in eval mode.

    Built from a copy of the model's modules (the model itself is not modified):

    - the frontend and global MVN become :class:`FbankGraph` (the STFT as a DFT
      convolution), so the graph takes raw 16 kHz waveforms;
    - relative positional encodings are computed in the graph
      (:class:`GraphRelPositionalEncoding`) instead of a stored table;
    - the stock ``ConformerEncoder`` gets its padding mask from the lengths in the
      graph (ESPnet builds it with ``tolist``, which a trace would freeze); with
      intermediate CTC the last block is decoded (self-conditioning included);
    - BLR-MoE / LR-MoE routing traces through
      :class:`~espnet_plugins.asr.moe.traced_dispatch.TracedDispatchPlan`: top-1,
      one expert's matmul per frame;
    - the SMEAR projector traces as it is: its merge is one GEMM per layer
      (``ḡ @ W.view(M, -1)``) and a batched matmul over time, with no Python loop.

    ``forward`` returns the CTC log-probabilities [B, T', V], their lengths [B] and,
    for models with a language router, the router's logits [B, T', L] (the ones the
    routing used, prior included; L = the kept languages after pruning).

    Args:
        model: an ``ESPnetASRModel`` / ``MoEASRModel`` with a CTC head.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        if model.ctc is None:
            raise NotImplementedError("export needs a model with a CTC head (ctc_weight > 0)")
        if getattr(model, "postencoder", None) is not None:
            raise NotImplementedError("export does not support a postencoder")
        self.fbank = FbankGraph(model.frontend, model.normalize)
        self.preencoder = copy.deepcopy(model.preencoder)
        self.encoder = copy.deepcopy(model.encoder)
        if self.preencoder is not None and not isinstance(self.preencoder, SmearProjector):
            raise NotImplementedError(
                f"export supports preencoder: smear_moe or none, got {type(self.preencoder).__name__}"
            )
        if isinstance(self.encoder, ConformerEncoder):
            if getattr(self.encoder, "ctc_trim", False):
                raise NotImplementedError("export does not support ctc_trim encoders")
        elif not isinstance(self.encoder, BLRMoEEncoder):
            raise NotImplementedError(
                f"export supports encoder: conformer or blr_moe, got {type(self.encoder).__name__}"
            )
        replace_rel_positional_encodings(self.encoder)
        self.ctc = copy.deepcopy(model.ctc)
        self.has_router = isinstance(self.encoder, BLRMoEEncoder)
        self.eval()

    def output_names(self) -> Tuple[str, ...]:
        names = ("log_probs", "log_probs_lengths")
        return names + ("lid_logits",) if self.has_router else names

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        """speech [B, S] float32 16 kHz, speech_lengths [B] int64."""
        feats, lengths = self.fbank(speech, speech_lengths)
        if self.preencoder is not None:
            feats, lengths = self.preencoder(feats, lengths)
        if isinstance(self.encoder, ConformerEncoder):
            pad = torch.arange(feats.size(1), device=feats.device)[None, :] >= lengths[:, None]
            # Intermediate CTC: only self-conditioning changes the forward (it needs the head).
            conditioning = getattr(self.encoder, "interctc_use_conditioning", False)
            kwargs = {"ctc": self.ctc} if conditioning else {}
            enc, out_lengths, _ = self.encoder(feats, lengths, masks=pad, **kwargs)
        else:
            enc, out_lengths, aux = self.encoder.forward_with_aux(feats, lengths)
        if isinstance(enc, tuple):  # (last block, intermediate outputs): decode the last
            enc = enc[0]
        log_probs = self.ctc.log_softmax(enc)
        if self.has_router:
            return log_probs, out_lengths, aux["lid_logits"]
        return log_probs, out_lengths
