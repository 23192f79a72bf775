"""SMEAR-MoE projector (arXiv 2601.19451) and its baselines as an ESPnet preencoder."""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet_plugins.asr.moe_interface import LanguagePriorMixin
from espnet_plugins.asr.preencoder.conv1d_downsampler import Conv1dDownsampler
from espnet_plugins.asr.preencoder.expert_mlp_bank import ExpertMLPBank
from espnet_plugins.asr.preencoder.utterance_gate import UtteranceGate

VARIANTS = ("smear", "monolithic", "dense_ensemble", "hard_topk")
LOAD_BALANCE_TYPES = ("mse", "switch")
GATE_CONDITIONING = ("none", "language", "family")


class _ZeroInitEmbedding(torch.nn.Embedding):
    """An embedding that starts (and after ESPnet's ``init:``, which calls every
    embedding's ``reset_parameters``, restarts) at zero."""

    def reset_parameters(self) -> None:
        torch.nn.init.zeros_(self.weight)


class SmearProjector(AbsPreEncoder, LanguagePriorMixin):
    """Conv1D downsampler -> utterance gate -> M expert MLPs merged per utterance.

    SMEAR-MoE (soft merging of experts with adaptive routing, Muqeeth, Liu & Raffel
    2023, applied to a multilingual speech projector in arXiv 2601.19451):

    1. a shared :class:`Conv1dDownsampler` (rate ``downsample_rate``);
    2. an :class:`UtteranceGate`: per-frame softmax over M experts, averaged over the
       utterance's valid frames only -> ḡ [B, M];
    3. an :class:`ExpertMLPBank` whose experts are merged into one virtual expert per
       utterance, ``W̄ = Σ ḡ_m W_m`` and ``b̄ = Σ ḡ_m b_m`` for both layers, applied
       with one batched matmul over time. The merge is differentiable, so every
       expert gets gradient while compute stays that of one MLP (plus O(B·M·P) to
       merge, independent of the number of frames).

    ``variant`` selects a baseline with the same downsampler and expert shape:
    ``monolithic`` (one MLP, no gate), ``dense_ensemble`` (all M experts on every
    frame, outputs averaged with static weights 1/M: M x compute, no gate) and
    ``hard_topk`` (the ``top_k`` experts with the largest ḡ per utterance, outputs
    weighted by their gates; only those experts get gradient; no capacity limit).

    :meth:`forward_with_aux` of gated variants returns (see
    :mod:`espnet_plugins.asr.moe_interface`): ``load_balance`` (weighted in the
    model by ``model_conf.load_balance_weight``), ``gate_entropy`` (mean entropy of
    ḡ, nats), ``gate_mean_e{m}`` (batch-mean ḡ_m) and ``gate`` (ḡ, detached).
    ``monolithic`` and ``dense_ensemble`` return an empty dict.

    Load balancing works on utterances, the unit SMEAR routes:
    ``mse`` = mean_m (mean_b ḡ_bm - 1/M)², as in the authors' code, 0 iff the batch
    uses experts equally on average; ``switch`` = M Σ_m f_m P_m (Switch Transformer),
    with f_m the fraction of routing slots (utterances x top_k; arg-max of ḡ for
    ``smear``) sent to expert m and P_m = mean_b ḡ_bm; 1 when balanced.

    Args:
        input_size: Feature dimension of the input (e.g. 80 for fbank, or the frozen
            encoder's output size).
        output_size: Output dimension (the encoder's ``input_size``).
        hidden_size: Hidden width of each expert MLP.
        num_experts: Number of experts M (ignored by ``monolithic``).
        variant: ``smear``, ``monolithic``, ``dense_ensemble`` or ``hard_topk``.
        downsample_rate: Time reduction of the downsampler. In front of an encoder
            whose ``input_layer`` already subsamples 4x, keep it at 1 or 2 so enough
            frames remain for character CTC (output frames must exceed the label
            length); on a frozen encoder's output (already 40 ms/frame) use 1.
        gate_type: ``linear`` or ``mlp`` per-frame gate.
        gate_hidden_size: Hidden width of the ``mlp`` gate.
        top_k: Experts per utterance for ``hard_topk``.
        topk_renormalize: ``true``: ``hard_topk`` weights are the selected gates
            divided by their sum; with ``top_k: 1`` that weight is exactly 1 and the
            task loss gives the gate no gradient (it learns only from the balance
            loss). ``false`` (default): weights are the raw ḡ of the selected experts
            (Switch Transformer style), so the task loss trains the gate.
        load_balance_type: ``mse`` or ``switch`` (see above).
        activation: Expert activation: ``relu``, ``gelu``, ``swish`` or ``tanh``.
        dropout: Dropout on the experts' hidden activation.
        langs: Language names in id order (the ASR task injects them from
            ``--lang_list``); needed only for ``gate_conditioning``.
        gate_conditioning: ``none`` (default, the paper's projector), ``language``
            or ``family``: a learned bias per language (or language family) is added
            to the gate logits — the SMEAR-MoE paper's open question 3, "would
            conditioning the gate on language or family identity help?". The bias
            table starts at zero (no effect until trained). :class:`MoEASRModel`
            passes each training utterance's ``utt2lang`` language; in validation
            and at inference the condition comes from a language prior
            (``--allowed_langs``, :meth:`set_language_prior`) when it names exactly
            one language (or one family), and is "unknown" otherwise, so the
            validation loss is computed the way decoding conditions the gate.
        language_families: ``{language: family}`` for ``family`` conditioning, e.g.
            ``{hi: indo_aryan, mr: indo_aryan, ta: dravidian, te: dravidian}``.
        condition_dropout: During training each utterance's condition is replaced
            by "unknown" with this probability, so that the "unknown" row is trained
            and decoding without a prior works.
        residual: Output ``input + projector(input)`` with the experts' output
            layer (``w2``, ``b2``) initialised to zero, so the projector starts as
            the identity and the model at initialisation is the one without it.
            Our addition, not in the paper, for a projector on the fbank in front of
            an encoder trained from scratch (docs/model_notes.md). Needs
            ``downsample_rate: 1`` and ``input_size == output_size``.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        hidden_size: int = 1024,
        num_experts: int = 4,
        variant: str = "smear",
        downsample_rate: int = 1,
        gate_type: str = "linear",
        gate_hidden_size: int = 256,
        top_k: int = 1,
        topk_renormalize: bool = False,
        load_balance_type: str = "mse",
        activation: str = "relu",
        dropout: float = 0.0,
        langs: Optional[List[str]] = None,
        gate_conditioning: str = "none",
        language_families: Optional[Dict[str, str]] = None,
        condition_dropout: float = 0.1,
        residual: bool = False,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if load_balance_type not in LOAD_BALANCE_TYPES:
            raise ValueError(
                f"load_balance_type must be one of {LOAD_BALANCE_TYPES}, "
                f"got {load_balance_type!r}"
            )
        if variant == "monolithic":
            num_experts = 1
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        if variant == "hard_topk" and not 1 <= top_k <= num_experts:
            raise ValueError(
                f"top_k must be in [1, num_experts={num_experts}] for hard_topk, "
                f"got {top_k}"
            )
        self.variant = variant
        self.num_experts = num_experts
        self.top_k = top_k
        self.topk_renormalize = topk_renormalize
        self.load_balance_type = load_balance_type
        self._output_size = output_size

        self.downsampler = Conv1dDownsampler(input_size, downsample_rate)
        self.gate: Optional[UtteranceGate] = None
        if variant in ("smear", "hard_topk"):
            self.gate = UtteranceGate(
                input_size, num_experts, gate_type, gate_hidden_size
            )
        self.experts = ExpertMLPBank(
            num_experts, input_size, hidden_size, output_size, activation, dropout,
            zero_output=residual,  # the residual projector starts as the identity
        )
        self.residual = residual
        if residual:
            if downsample_rate != 1 or input_size != output_size:
                raise ValueError(
                    "residual: true adds the projector's input to its output, so it "
                    f"needs downsample_rate: 1 (got {downsample_rate}) and output_size "
                    f"== input_size (got {output_size} and {input_size}); set "
                    "residual: false or change them"
                )
        self._setup_conditioning(langs, gate_conditioning, language_families, condition_dropout)

        shared = sum(p.numel() for p in self.downsampler.parameters())
        if self.gate is not None:
            shared += sum(p.numel() for p in self.gate.parameters())
        active_experts = {"dense_ensemble": num_experts, "hard_topk": top_k}
        self.num_params_total = shared + num_experts * self.experts.expert_size()
        self.num_params_active = (
            shared + active_experts.get(variant, 1) * self.experts.expert_size()
        )
        logging.info(
            f"SmearProjector(variant={variant}, num_experts={num_experts}): "
            f"{self.num_params_total / 1e6:.3f} M parameters, "
            f"{self.num_params_active / 1e6:.3f} M active per frame"
        )

    def _setup_conditioning(
        self,
        langs: Optional[List[str]],
        mode: str,
        families: Optional[Dict[str, str]],
        dropout: float,
    ) -> None:
        if mode not in GATE_CONDITIONING:
            raise ValueError(f"gate_conditioning must be one of {GATE_CONDITIONING}, got {mode!r}")
        self.gate_conditioning = mode
        self.langs = list(langs) if langs is not None else None
        self.condition_dropout = dropout
        self._prior_condition: Optional[int] = None
        self.condition_bias: Optional[torch.nn.Embedding] = None
        if mode == "none":
            return
        if self.gate is None:
            raise ValueError(
                f"gate_conditioning={mode!r} needs a gate: use variant smear or hard_topk "
                f"(got {self.variant!r})"
            )
        if not self.langs:
            raise ValueError(
                "gate_conditioning needs the languages: the ASR task injects "
                "preencoder_conf.langs from --lang_list; outside it pass langs=[...]"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {dropout}")
        if mode == "language":
            names = list(self.langs)
            lang_to_condition = list(range(len(self.langs)))
        else:
            missing = [x for x in self.langs if x not in (families or {})]
            if missing:
                raise ValueError(
                    f"gate_conditioning=family: language_families has no family for "
                    f"{missing}; give every language of {self.langs} a family"
                )
            names = sorted(set(families[x] for x in self.langs))
            lang_to_condition = [names.index(families[x]) for x in self.langs]
        self.condition_names = names
        # Row len(names) is "unknown". Zero init: conditioning starts as a no-op.
        self.condition_bias = _ZeroInitEmbedding(len(names) + 1, self.num_experts)
        self.register_buffer(
            "_lang_to_condition", torch.tensor(lang_to_condition), persistent=False
        )

    def set_language_prior(
        self,
        allowed: Optional[Sequence[int]],
        mode: str = "hard",
        soft_floor: float = 0.1,
    ) -> None:
        """Inference condition: the prior's language (or family) if it names one, else unknown.

        ``mode``/``soft_floor`` do not apply (SMEAR routes softly by construction).
        Without ``gate_conditioning`` there is nothing to condition: a prior raises
        ``ValueError`` instead of being ignored.
        """
        if allowed is None:
            self._prior_condition = None
            return
        if self.condition_bias is None:
            raise ValueError(
                f"SmearProjector(variant={self.variant!r}, gate_conditioning='none') has no "
                "language input, so a language prior would be ignored; a prior needs "
                "gate_conditioning: language or family (or a router: encoder: blr_moe)"
            )
        conditions = {int(self._lang_to_condition[i]) for i in allowed}
        self._prior_condition = conditions.pop() if len(conditions) == 1 else None

    def applies_language_prior(self) -> bool:
        return self.condition_bias is not None

    def _condition_logit_bias(
        self, batch_size: int, device, labels: Optional[torch.Tensor]
    ) -> Optional[torch.Tensor]:
        if self.condition_bias is None:
            return None
        unknown = len(self.condition_names)
        if labels is not None:
            labels = labels.to(device)
            cond = torch.where(
                labels >= 0, self._lang_to_condition.to(device)[labels.clamp(min=0)], unknown
            )
            if self.training and self.condition_dropout > 0:
                drop = torch.rand(batch_size, device=device) < self.condition_dropout
                cond = cond.masked_fill(drop, unknown)
        else:
            prior = unknown if self._prior_condition is None else self._prior_condition
            cond = torch.full((batch_size,), prior, device=device, dtype=torch.long)
        return self.condition_bias(cond)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """ESPnet's preencoder contract: :meth:`forward_with_aux` without the aux dict."""
        y, lengths, _ = self.forward_with_aux(input, input_lengths)
        return y, lengths

    def forward_with_aux(
        self,
        input: torch.Tensor,
        input_lengths: torch.Tensor,
        lang: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """Project ``input`` [B, T, D_in] -> ([B, T // r, D_out], lengths [B], aux).

        ``lang`` [B] (``-1``: unknown): each utterance's language for a conditioned
        gate (training labels); None: the language prior's condition, else unknown.
        Output frames past each utterance's length are zero.
        """
        x, lengths = self.downsampler(input, input_lengths)
        aux: Dict[str, torch.Tensor] = {}
        if self.variant == "monolithic":
            y = self.experts.forward_expert(x, 0)
        elif self.variant == "dense_ensemble":
            y = self.experts.forward_mean(x)
        else:
            bias = self._condition_logit_bias(x.size(0), x.device, lang)
            gate = self.gate(x, lengths, bias)
            if self.variant == "smear":
                y = self.experts.forward_merged(x, gate)
                routed = gate.argmax(dim=1, keepdim=True)  # f_m of the switch loss
            else:
                top_gate, routed = gate.topk(self.top_k, dim=1)
                if self.topk_renormalize:
                    top_gate = top_gate / top_gate.sum(dim=1, keepdim=True)
                y = self.experts.forward_selected(x, routed, top_gate)
            aux = self._gate_stats(gate, routed)
        if self.residual:
            y = y + input
        # The biases would otherwise leave nonzero values at padded frames.
        valid = torch.arange(y.size(1), device=y.device) < lengths.unsqueeze(1)
        return y * valid.unsqueeze(2).to(y.dtype), lengths, aux

    def _gate_stats(
        self, gate: torch.Tensor, routed: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """Load-balancing loss and routing statistics from ḡ [B, M], routed [B, k]."""
        mean_gate = gate.mean(dim=0)  # P_m
        if self.load_balance_type == "mse":
            load_balance = (mean_gate - 1.0 / self.num_experts).pow(2).mean()
        else:
            counts = torch.zeros_like(mean_gate).index_add_(
                0, routed.flatten(), torch.ones_like(routed.flatten(), dtype=gate.dtype)
            )
            fraction = counts / routed.numel()  # f_m, not differentiable by design
            load_balance = self.num_experts * (fraction * mean_gate).sum()
        entropy = -(gate * gate.clamp_min(1e-12).log()).sum(dim=1).mean()
        stats = {"load_balance": load_balance, "gate_entropy": entropy.detach(), "gate": gate.detach()}
        for m in range(self.num_experts):
            stats[f"gate_mean_e{m}"] = mean_gate[m].detach()
        return stats
