"""``MoEASRModel``: ESPnet's ASR model plus the auxiliary losses of MoE modules."""
import inspect
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import editdistance
import torch
import torch.nn.functional as F
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable
from typeguard import typechecked

from espnet_plugins.asr.moe_interface import AuxOutputMixin


class MoEASRModel(ESPnetASRModel):
    """CTC(/attention) ASR model that adds ``λ·LID + w·load_balance`` to ESPnet's loss.

    Modules mixing in :class:`AuxOutputMixin` (preencoder, encoder) report router logits
    and balance losses after each forward; this model turns them into losses using the
    ``lang`` labels the task loads from ``utt2lang``. With no such module (a stock
    conformer) it is ESPnet's model unchanged: that is the dense baseline.

    Args (besides ESPnet's):
        langs: language names in id order (injected from ``--lang_list``).
        lid_weight: λ for the LID loss (BLR-MoE paper: 0.3).
        lid_loss: ``ce`` = frame-level cross-entropy against the utterance language,
            padding masked (the paper does not give the form; this is the simplest that
            trains a frame router); ``ctc`` = CTC over the per-utterance language
            sequence (``utt2lang`` may list several), for code-switched data where one
            label per utterance is wrong; blank is a constant logit 0.
        load_balance_weight: weight of the modules' ``load_balance`` losses.
        lid_loss_norm: how ``lid_loss: ce`` is normalised: ``frame`` = mean over the
            batch's valid frames; ``utterance`` = sum over each utterance's frames,
            mean over utterances: the normalisation of ESPnet's CTC loss
            (``length_normalized_loss: false``), so that λ weighs LID against CTC as
            in the papers, where both are per-utterance sums. With ``frame`` the LID
            term's gradient on the shared blocks is ~1/(frames per utterance) of
            that, i.e. ~1000x smaller than CTC's (docs/router_diagnosis.md).
            (``lid_loss: ctc`` is a per-utterance loss already; this does not apply.)

    Non-finite training steps: when a training batch gives a NaN/inf loss (corrupt
    audio, an exploding step), the normalisation running statistics (BatchNorm) that
    its forward updated are restored, a warning with the running count is logged and
    the stat ``nonfinite_step`` is 1 for that step (its epoch mean is the fraction of
    skipped steps). The NaN loss is returned as is: ESPnet's trainer then sees a
    non-finite gradient norm and skips the optimizer step, so nothing non-finite
    reaches the weights or a checkpoint.
    """

    @typechecked
    def __init__(
        self,
        *args,
        langs: Optional[List[str]] = None,
        lid_weight: float = 0.3,
        lid_loss: str = "ce",
        load_balance_weight: float = 0.01,
        lid_loss_norm: str = "frame",
        **kwargs,
    ):
        if lid_weight < 0 or load_balance_weight < 0:
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
        self.langs = list(langs) if langs is not None else None
        self.lid_weight = lid_weight
        self.lid_loss = lid_loss
        self.load_balance_weight = load_balance_weight
        self.lid_loss_norm = lid_loss_norm
        self.num_nonfinite_steps = 0  # this process's count (not saved: keeps old checkpoints loadable)
        # Switched by the trainer's --specaug_start_iter schedule; not a state-dict entry.
        self.specaug_enabled = True

    # ------------------------------------------------------------------ helpers
    @classmethod
    def _publish_signature(cls) -> None:
        """Expose ESPnet's arguments + ours as one signature.

        ``--print_config`` and config validation read ``inspect.signature(__init__)``; with
        ``*args, **kwargs`` they would show only our four options.
        """
        init = cls.__init__
        parent = [p for p in inspect.signature(ESPnetASRModel.__init__).parameters.values()]
        own = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for p in inspect.signature(init).parameters.values() if p.kind == inspect.Parameter.KEYWORD_ONLY]
        init.__signature__ = inspect.signature(init).replace(parameters=parent + own)

    def aux_modules(self) -> List[AuxOutputMixin]:
        return [m for m in (self.frontend, self.preencoder, self.encoder) if isinstance(m, AuxOutputMixin)]

    def pop_aux(self) -> Dict[str, torch.Tensor]:
        """Merge the aux dicts of the last forward (keys are prefixed on collision)."""
        merged: Dict[str, torch.Tensor] = {}
        for module in self.aux_modules():
            for key, value in module.pop_aux().items():
                if key in merged and key == "load_balance":
                    merged[key] = merged[key] + value
                else:
                    merged[key if key not in merged else f"{type(module).__name__}_{key}"] = value
        return merged

    def router_parameters(self) -> List[torch.nn.Parameter]:
        params: List[torch.nn.Parameter] = []
        for module in (self.frontend, self.preencoder, self.encoder):
            if module is not None and hasattr(module, "router_parameters"):
                params.extend(module.router_parameters())
        return params

    def freeze_all_but_router(self) -> None:
        """Router augmentation: only the language router(s) stay trainable.

        Frozen parts are also kept in eval mode (see :meth:`train`): ``requires_grad``
        alone would still let BatchNorm running statistics and dropout change the ASR
        path while the router is fine-tuned.
        """
        router = {id(p) for p in self.router_parameters()}
        if not router:
            raise ValueError(
                "--train_router_only needs a model with a language router "
                "(e.g. encoder: blr_moe); this model has none"
            )
        for p in self.parameters():
            p.requires_grad_(id(p) in router)
        # The outermost modules made only of router parameters: they alone train.
        self._router_modules = []
        for name, module in self.named_modules():
            params = list(module.parameters())
            inside_kept = any(name.startswith(kept + ".") for kept, _ in self._router_modules)
            if params and not inside_kept and all(id(p) in router for p in params):
                self._router_modules.append((name, module))
        self.train(self.training)

    def train(self, mode: bool = True):
        """After :meth:`freeze_all_but_router`, ``train()`` trains the router alone.

        Frozen modules stay in eval mode (the paper's "ASR frozen": no dropout, no
        BatchNorm statistics update), while the model itself and SpecAugment are in
        training mode, so augmentation and the non-finite-step guard still apply.
        """
        super().train(mode)
        router_modules = getattr(self, "_router_modules", None)
        if mode and router_modules is not None:
            super().train(False)
            self.training = True  # read by ESPnet's encode (SpecAugment) and forward's guard
            if self.specaug is not None:
                self.specaug.train(True)
            for _, module in router_modules:
                module.train(True)
        return self

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
            # CTC needs a blank class the language softmax lacks: a constant logit 0 acts
            # as blank, so routing (arg-max over the L language logits) is unaffected.
            blank = logits.new_zeros(B, T, 1)
            logp = torch.cat([blank, logits], dim=-1).log_softmax(-1).transpose(0, 1)
            loss = F.ctc_loss(
                logp, (lang + 1).clamp(min=0), lengths, lang_lengths, reduction="mean", zero_infinity=True
            )
        # Utterance-level accuracy: majority of frame decisions vs the first language.
        frame_pred = logits.argmax(-1)
        votes = F.one_hot(frame_pred, L) * valid[..., None]
        acc = (votes.sum(1).argmax(-1) == lang[:, 0]).float().mean()
        return loss, acc

    def _running_stat_buffers(self) -> List[torch.Tensor]:
        """Buffers a training forward updates in place (BatchNorm running mean/var/count)."""
        return [
            b
            for m in self.modules()
            if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.track_running_stats
            for b in m.buffers(recurse=False)
            if b is not None
        ]

    # ------------------------------------------------------------------ forward
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
        # Listed once per forward (not cached: .to()/.cuda() replace buffer objects).
        buffers = self._running_stat_buffers() if self.training else None
        saved = [b.clone() for b in buffers] if buffers is not None else None
        loss, stats, weight = self._forward_losses(
            speech, speech_lengths, text, text_lengths, lang, lang_lengths, **kwargs
        )
        if saved is not None:
            finite = bool(torch.isfinite(loss))
            if not finite:
                # Through ``.data``: the batch-norm op saved these buffers for its
                # backward (which does not read them in training mode); an in-place
                # write that bumps their version would make loss.backward() raise.
                for buf, old in zip(buffers, saved):
                    buf.data.copy_(old)
                self.num_nonfinite_steps += 1
                logging.warning(
                    f"non-finite training loss ({float(loss.detach())}; "
                    + ", ".join(
                        f"{k}={float(v):.4g}"
                        for k, v in stats.items()
                        if k.startswith("loss") and v is not None
                    )
                    + f") for a batch of {speech.shape[0]} utterances: normalisation statistics "
                    f"restored, the optimizer step is skipped ({self.num_nonfinite_steps} such steps "
                    "in this run so far). Many of them point to corrupt audio (NaN samples) or too "
                    "high a learning rate."
                )
            # shaped [1] like the stats force_gatherable made (DDP / DataParallel average them)
            stats["nonfinite_step"] = loss.new_tensor([0.0 if finite else 1.0])
        return loss, stats, weight

    def encode(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.specaug is not None and not self.specaug_enabled:
            specaug = self.specaug
            self.specaug = None  # ESPnet's encode applies self.specaug when it is set
            try:
                encoder_out, encoder_out_lens = super().encode(speech, speech_lengths)
            finally:
                self.specaug = specaug
        else:
            encoder_out, encoder_out_lens = super().encode(speech, speech_lengths)
        if self.training and self.ctc is not None:  # for the ctc_emission statistic
            # With intermediate CTC, ESPnet returns (final output, [(layer, output), ...]).
            final = encoder_out[0] if isinstance(encoder_out, tuple) else encoder_out
            self._ctc_signal_input = (final.detach(), encoder_out_lens)
        return encoder_out, encoder_out_lens

    @torch.no_grad()
    def ctc_greedy_signals(
        self,
        encoder_out: torch.Tensor,
        encoder_out_lens: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        names: Sequence[str] = ("ctc_emission", "ctc_cer"),
    ) -> Dict[str, torch.Tensor]:
        """Greedy CTC on this batch: ``ctc_emission`` = tokens emitted per reference
        token (0 on the blank plateau, ~1 once CTC transcribes), ``ctc_cer`` = token
        error rate (edit distance over the reference length), on this rank's batch."""
        best = self.ctc.argmax(encoder_out)  # [B, T]
        frames = torch.arange(best.size(1), device=best.device)
        new = best != self.blank_id
        new[:, 1:] &= best[:, 1:] != best[:, :-1]  # CTC collapse: repeats count once
        new &= frames < encoder_out_lens.to(best.device).unsqueeze(1)
        counts = [new.sum().float(), text_lengths.sum().float().to(best.device)]
        if "ctc_cer" in names:
            errors = 0
            for hyp_row, keep, ref_row, n in zip(best.tolist(), new.tolist(), text.tolist(), text_lengths.tolist()):
                hyp = [t for t, k in zip(hyp_row, keep) if k]
                errors += editdistance.eval(hyp, ref_row[:n])
            counts.append(torch.tensor(float(errors), device=best.device))
        counts = torch.stack(counts)  # this rank's batch only: a statistic, not a decision
        ref = counts[1].clamp(min=1)
        out = {"ctc_emission": counts[0] / ref}
        if "ctc_cer" in names:
            out["ctc_cer"] = counts[2] / ref
        return {k: v for k, v in out.items() if k in names}

    def _forward_losses(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor],
        text_lengths: Optional[torch.Tensor],
        lang: Optional[torch.Tensor],
        lang_lengths: Optional[torch.Tensor],
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        if lang is not None and self.training and getattr(self, "_router_modules", None) is None:
            # Gates conditioned on the language get the utt2lang labels in training only.
            # Validation (eval mode) conditions them as decoding does (a language prior
            # if one is set, else "unknown"), so the validation loss that selects
            # checkpoints does not see oracle labels that decoding lacks. So does router
            # augmentation: its router learns from the frozen gate as decoding runs it.
            for module in self.aux_modules():
                if hasattr(module, "set_gate_condition"):
                    module.set_gate_condition(lang[:, 0])
        if text is not None:
            loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        else:
            # Router-only training (audio + language, no transcripts): encode only.
            self.encode(speech, speech_lengths)
            loss, stats, weight = torch.zeros((), device=speech.device), {}, speech.new_tensor(speech.shape[0])
        aux = self.pop_aux()
        if self.training and lang is None and "lid_logits" in aux and self.lid_weight > 0:
            raise ValueError(
                f"this model has a language router (LID loss weight lid_weight={self.lid_weight}), "
                "but the training batch has no 'lang' labels, so the router would never learn: "
                "give the training data's utt2lang (--train_data_path_and_name_and_type "
                "<data>/utt2lang,lang,text) and --lang_list, or set model_conf lid_weight: 0"
            )
        signal_input = self.__dict__.pop("_ctc_signal_input", None)
        if signal_input is not None and text is not None:
            # The plateau signal in the training log (0 while CTC emits only blank).
            stats.update(self.ctc_greedy_signals(*signal_input, text, text_lengths, ("ctc_emission",)))
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
        loss, stats, weight = force_gatherable((loss, stats, weight), loss.device)
        return loss, stats, weight


MoEASRModel._publish_signature()
