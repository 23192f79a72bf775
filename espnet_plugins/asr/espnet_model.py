"""``MoEASRModel``: ESPnet's ASR model plus the auxiliary losses of MoE modules."""
import logging
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from espnet2.asr.espnet_model import ESPnetASRModel, autocast_type
from espnet2.torch_utils.device_funcs import force_gatherable
from torch.amp import autocast
from typeguard import typechecked

from espnet_plugins.asr.moe_interface import merge_aux
from espnet_plugins.inference.ctc_decoding import ctc_greedy_mask

DEFAULT_LID_WEIGHT = 0.3  # BLR-MoE paper's λ


class MoEASRModel(ESPnetASRModel):
    """CTC(/attention) ASR model that adds ``λ·LID + w·load_balance`` to ESPnet's loss.

    Preencoder and encoder may return an aux dict (``forward_with_aux``, see
    ``moe_interface``); this model turns it into losses using the ``lang`` labels the
    task loads from ``utt2lang``. Without such a module it computes ESPnet's loss: the
    dense baseline.

    Args (besides ESPnet's):
        langs: language names in id order (injected from ``--lang_list``).
        lid_weight: λ for the LID loss (default 0.3, the BLR-MoE paper's). Set on a
            model without a language router, it does nothing: training logs a warning.
        lid_loss: ``ce`` = frame-level cross-entropy against the utterance language,
            padding masked; ``ctc`` = CTC over the per-utterance language sequence
            (code-switched data); blank is a constant logit 0.
        load_balance_weight: weight of the modules' ``load_balance`` losses.
        lid_loss_norm: ``lid_loss: ce`` normalisation: ``frame`` = mean over valid
            frames; ``utterance`` = sum per utterance, mean over utterances (as ESPnet's
            CTC loss with ``length_normalized_loss: false``).
    """

    @typechecked
    def __init__(
        self,
        *args,
        langs: Optional[List[str]] = None,
        lid_weight: Optional[float] = None,
        lid_loss: str = "ce",
        load_balance_weight: float = 0.01,
        lid_loss_norm: str = "frame",
        **kwargs,
    ):
        if (lid_weight is not None and lid_weight < 0) or load_balance_weight < 0:
            raise ValueError(
                f"lid_weight={lid_weight} and load_balance_weight={load_balance_weight} "
                "must be >= 0 (set 0 to disable a loss)"
            )
        if lid_loss not in ("ce", "ctc"):
            raise ValueError(f"lid_loss must be 'ce' or 'ctc', got {lid_loss!r}")
        if lid_loss_norm not in ("frame", "utterance"):
            raise ValueError(
                f"lid_loss_norm must be 'frame' or 'utterance', got {lid_loss_norm!r}"
            )
        super().__init__(*args, **kwargs)
        if self.use_transducer_decoder or self.use_linear_decoder or self.aux_ctc:
            raise ValueError(
                "model: moe_espnet composes CTC, intermediate CTC and attention-decoder "
                "losses; a transducer or linear decoder or aux_ctc needs model: espnet"
            )
        self.langs = list(langs) if langs is not None else None
        self._lid_weight_set = lid_weight is not None
        self.lid_weight = DEFAULT_LID_WEIGHT if lid_weight is None else lid_weight
        self.lid_loss = lid_loss
        self.load_balance_weight = load_balance_weight
        self.lid_loss_norm = lid_loss_norm
        self._warned_inert_lid_weight = False

    def router_parameters(self) -> List[torch.nn.Parameter]:
        params: List[torch.nn.Parameter] = []
        for module in (self.frontend, self.preencoder, self.encoder):
            if module is not None and hasattr(module, "router_parameters"):
                params.extend(module.router_parameters())
        return params

    def lid_loss_and_acc(
        self, aux: Dict[str, torch.Tensor], lang: torch.Tensor, lang_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        logits, lengths = aux["lid_logits"], aux["lid_lengths"]
        B, T, L = logits.shape
        valid = torch.arange(T, device=logits.device)[None, :] < lengths[:, None]
        if self.lid_loss == "ce":
            target = lang[:, :1].expand(B, T)
            loss = F.cross_entropy(logits.reshape(-1, L), target.reshape(-1), reduction="none")
            loss = (loss * valid.reshape(-1)).sum()
            if self.lid_loss_norm == "frame":
                loss = loss / valid.sum().clamp(min=1)
            else:
                loss = loss / B
        else:
            # A constant logit 0 as blank: routing (arg-max over languages) is unaffected.
            blank = logits.new_zeros(B, T, 1)
            logp = torch.cat([blank, logits], dim=-1).log_softmax(-1).transpose(0, 1)
            loss = F.ctc_loss(
                logp, (lang + 1).clamp(min=0), lengths, lang_lengths, reduction="mean", zero_infinity=True
            )
        # Routing accuracy: the majority of frame decisions (what frame routing acts on)
        # vs the first language; decoding's utterance language is utterance_log_posterior.
        votes = F.one_hot(logits.argmax(-1), L) * valid[..., None]
        acc = (votes.sum(1).argmax(-1) == lang[:, 0]).float().mean()
        return loss, acc

    # ------------------------------------------------------------------ forward
    def encode(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """ESPnet's contract (used by its inference): :meth:`encode_with_aux` without aux."""
        encoder_out, encoder_out_lens, _ = self.encode_with_aux(speech, speech_lengths)
        return encoder_out, encoder_out_lens

    def encode_with_aux(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        lang: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """ESPnet's ``encode`` plus the modules' aux outputs.

        SpecAugment applies in training while ``self.specaug`` is in training mode (the
        trainer's ``--specaug_start_iter`` switches it). ``lang`` [B, n] conditions a
        preencoder gate only while that preencoder trains: validation, decoding and a
        frozen projector (router augmentation) see the condition decoding uses.
        """
        with autocast("cuda", enabled=self.autocast_frontend, dtype=autocast_type):
            feats, feats_lengths = self._extract_feats(speech, speech_lengths)
            if self.specaug is not None and self.training and self.specaug.training:
                feats, feats_lengths = self.specaug(feats, feats_lengths)
            if self.normalize is not None:
                feats, feats_lengths = self.normalize(feats, feats_lengths)
        parts = []
        if hasattr(self.preencoder, "forward_with_aux"):
            cond = lang[:, 0] if lang is not None and self.preencoder.training else None
            feats, feats_lengths, aux = self.preencoder.forward_with_aux(feats, feats_lengths, cond)
            parts.append((type(self.preencoder).__name__, aux))
        elif self.preencoder is not None:
            feats, feats_lengths = self.preencoder(feats, feats_lengths)
        if hasattr(self.encoder, "forward_with_aux"):
            encoder_out, encoder_out_lens, aux = self.encoder.forward_with_aux(feats, feats_lengths)
            parts.append((type(self.encoder).__name__, aux))
        elif getattr(self.encoder, "interctc_use_conditioning", False) or getattr(self.encoder, "ctc_trim", False):
            encoder_out, encoder_out_lens, _ = self.encoder(feats, feats_lengths, ctc=self.ctc)
        else:
            encoder_out, encoder_out_lens, _ = self.encoder(feats, feats_lengths)
        if self.postencoder is not None:
            intermediate = encoder_out[1] if isinstance(encoder_out, tuple) else None
            final = encoder_out[0] if intermediate is not None else encoder_out
            final, encoder_out_lens = self.postencoder(final, encoder_out_lens)
            encoder_out = (final, intermediate) if intermediate is not None else final
        return encoder_out, encoder_out_lens, merge_aux(parts)

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
        lang: Optional[torch.Tensor] = None,
        lang_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """ESPnet's losses + ``λ·LID + w·load_balance``; without ``text`` (router
        augmentation: audio + language) the LID loss alone."""
        encoder_out, encoder_out_lens, aux = self.encode_with_aux(speech, speech_lengths, lang)
        if text is not None:
            loss, stats = self._asr_loss(encoder_out, encoder_out_lens, text, text_lengths)
        else:
            loss, stats = torch.zeros((), device=speech.device), {}
        if self.training and "lid_logits" not in aux and self._lid_weight_set and self.lid_weight > 0:
            if not self._warned_inert_lid_weight:
                logging.warning(
                    f"model_conf.lid_weight={self.lid_weight} has no effect: this model has no "
                    "language router (encoder: blr_moe), so there is no LID loss; remove lid_weight"
                )
                self._warned_inert_lid_weight = True
        if self.training and lang is None and "lid_logits" in aux and self.lid_weight > 0:
            raise ValueError(
                f"this model has a language router (LID loss weight lid_weight={self.lid_weight}), "
                "but the training batch has no 'lang' labels, so the router would never learn: "
                "give the training data's utt2lang (--train_data_path_and_name_and_type "
                "<data>/utt2lang,lang,text) and --lang_list, or set model_conf lid_weight: 0"
            )
        if "lid_logits" in aux and lang is not None:
            loss_lid, lid_acc = self.lid_loss_and_acc(aux, lang, lang_lengths)
            loss = loss + self.lid_weight * loss_lid if text is not None else loss_lid
            stats["loss_lid"], stats["lid_acc"] = loss_lid.detach(), lid_acc.detach()
        if "load_balance" in aux and text is not None:
            loss = loss + self.load_balance_weight * aux["load_balance"]
            stats["loss_load_balance"] = aux["load_balance"].detach()
        for key, value in aux.items():  # scalar statistics; tensors (logits, indices) are not stats
            if key != "load_balance" and value.dim() == 0:
                stats[key] = value.detach()
        stats["loss"] = loss.detach()
        weight = speech.shape[0] if text is not None else speech.new_tensor(speech.shape[0])
        return force_gatherable((loss, stats, weight), loss.device)

    def _asr_loss(
        self,
        encoder_out,
        encoder_out_lens: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> Tuple[torch.Tensor, Dict[str, Optional[torch.Tensor]]]:
        """ESPnet's CTC + intermediate CTC + attention-decoder loss and statistics."""
        text[text == -1] = self.ignore_id
        text = text[:, : text_lengths.max()]
        intermediate = None
        if isinstance(encoder_out, tuple):
            encoder_out, intermediate = encoder_out
        stats: Dict[str, Optional[torch.Tensor]] = {}
        loss_ctc = None
        if self.ctc_weight != 0.0:
            loss_ctc, cer_ctc = self._calc_ctc_loss(encoder_out, encoder_out_lens, text, text_lengths)
            stats["loss_ctc"], stats["cer_ctc"] = loss_ctc.detach(), cer_ctc
        if self.interctc_weight != 0.0 and intermediate is not None:
            loss_interctc = 0.0
            for layer, out in intermediate:
                loss_ic, cer_ic = self._calc_ctc_loss(out, encoder_out_lens, text, text_lengths)
                loss_interctc = loss_interctc + loss_ic
                stats[f"loss_interctc_layer{layer}"] = loss_ic.detach()
                stats[f"cer_interctc_layer{layer}"] = cer_ic
            loss_interctc = loss_interctc / len(intermediate)
            loss_ctc = (1 - self.interctc_weight) * loss_ctc + self.interctc_weight * loss_interctc
        loss_att = acc_att = cer_att = wer_att = None
        if self.ctc_weight != 1.0:
            loss_att, acc_att, cer_att, wer_att = self._calc_att_loss(
                encoder_out, encoder_out_lens, text, text_lengths
            )
        if self.ctc_weight == 0.0:
            loss = loss_att
        elif self.ctc_weight == 1.0:
            loss = loss_ctc
        else:
            loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
        stats["loss_att"] = loss_att.detach() if loss_att is not None else None
        stats["acc"], stats["cer"], stats["wer"] = acc_att, cer_att, wer_att
        if self.training and self.ctc is not None:
            # The plateau signal in the training log: tokens emitted per reference token.
            with torch.no_grad():
                emitted = ctc_greedy_mask(self.ctc.argmax(encoder_out), encoder_out_lens, self.blank_id).sum()
            stats["ctc_emission"] = emitted.float() / text_lengths.sum().clamp(min=1).to(emitted.device)
        return loss, stats
