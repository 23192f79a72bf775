"""BLR-MoE encoder: Conformer with language-routed attention and FFN experts.

BLR-MoE (arXiv 2501.12602) extends LR-MoE (arXiv 2307.05956): after
``num_shared_blocks`` ordinary blocks, ONE language router reads the hidden states
and picks a language expert per frame (or per utterance); the following
``num_moe_blocks`` blocks have expert self-attention projections (V and O by default)
and expert FFNs, all routed with that same decision.
"""
import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.legacy.nets.pytorch_backend.nets_utils import get_activation
from espnet2.legacy.nets.pytorch_backend.transformer.attention import (
    RelPositionMultiHeadedAttention,
)
from espnet2.legacy.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding
from espnet2.legacy.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet2.legacy.nets.pytorch_backend.transformer.subsampling import (
    Conv2dSubsampling,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
    TooShortUttError,
    check_short_utt,
)
from typeguard import typechecked

from espnet_plugins.asr.moe.dispatch import DispatchPlan, route_fractions
from espnet_plugins.asr.moe.encoder_block import EncoderBlock
from espnet_plugins.asr.moe.language_router import LanguageRouter
from espnet_plugins.asr.moe.masked_convolution import MaskedConvolutionModule
from espnet_plugins.asr.moe.moe_attention import MoERelPositionMultiHeadedAttention
from espnet_plugins.asr.moe.moe_feed_forward import MoEFeedForward
from espnet_plugins.asr.moe_interface import LanguagePriorMixin

# input_layer -> (ESPnet subsampling class, its time convolutions as (kernel, stride)).
# Output lengths are computed from these arithmetically: ESPnet derives them by
# slicing the padded mask, which gives a different length for the same utterance
# depending on how much padding follows it.
SUBSAMPLING = {
    "conv2d": (Conv2dSubsampling, ((3, 2), (3, 2))),
    "conv2d2": (Conv2dSubsampling2, ((3, 2), (3, 1))),
    "conv2d6": (Conv2dSubsampling6, ((3, 2), (5, 3))),
    "conv2d8": (Conv2dSubsampling8, ((3, 2), (3, 2), (3, 2))),
    "linear": (None, ()),
}


# Flat encoder_conf keys of configs written before router_conf -> LanguageRouter argument.
LEGACY_ROUTER_ARGS = {
    "router_type": "router_type",
    "router_channels": "channels",
    "router_kernel_sizes": "kernel_sizes",
    "router_dilations": "dilations",
    "router_activation": "activation",
    "router_linear_skip": "linear_skip",
    "router_conv_norm": "conv_norm",
    "router_dropout_rate": "dropout_rate",
    "routing": "granularity",
}


def router_conf_with_legacy_args(
    router_conf: Optional[Dict[str, Any]], legacy: Dict[str, Any]
) -> Dict[str, Any]:
    """``router_conf`` with the deprecated flat ``router_*`` keywords moved into it."""
    unknown = sorted(set(legacy) - set(LEGACY_ROUTER_ARGS))
    if unknown:
        raise TypeError(f"BLRMoEEncoder got unexpected keyword arguments {unknown}")
    conf = dict(router_conf or {})
    if legacy:
        # A flat key beside router_conf is an override (e.g. --encoder_conf router_type=linear
        # on a preset): it wins.
        logging.warning(
            "encoder_conf keys "
            + ", ".join(f"{k} -> router_conf.{LEGACY_ROUTER_ARGS[k]}" for k in sorted(legacy))
            + " are deprecated: move them into encoder_conf.router_conf (they are mapped for now)"
        )
        conf.update({LEGACY_ROUTER_ARGS[k]: v for k, v in legacy.items()})
    return conf


class BLRMoEEncoder(AbsEncoder, LanguagePriorMixin):
    """BLR-MoE / LR-MoE Conformer (or Transformer) encoder.

    Layout: ``input_layer`` -> ``num_shared_blocks`` dense blocks -> LanguageRouter
    (shared) -> ``num_moe_blocks`` MoE blocks -> LayerNorm. Every block is
    pre-LN with relative-position self-attention (ESPnet ``rel_pos``/``latest``), and
    the encoder is padding invariant: an utterance gives the same output and length
    alone and inside a zero-padded batch (eval mode).

    The router's dispatch plan (tokens sorted by expert) is computed once per forward
    and reused by every expert projection of every MoE block.

    Presets: LR-MoE = ``router_type: linear, moe_attention_projections: []``;
    BLR-MoE = ``router_type: tdnn, moe_attention_projections: [v, o]``.

    Args:
        input_size: feature size.
        output_size: model size.
        attention_heads: self-attention heads.
        linear_units: FFN hidden size (per expert in MoE blocks).
        num_shared_blocks: dense blocks before the router.
        num_moe_blocks: MoE blocks after the router.
        langs: language names, one expert each (the ASR task injects them from
            ``--lang_list``); position = expert / LID class index.
        num_experts: number of experts; must equal ``len(langs)`` if both are given.
        moe_attention_projections: attention projections that are experts, any
            subset of ``q, k, v, o`` (``[]``: shared attention, as in LR-MoE).
        moe_ffn: which FFNs of an MoE block are experts: ``both`` (macaron and final),
            ``second`` (final only) or ``none``. Without macaron there is one FFN,
            and ``both``/``second`` both make it an expert.
        block_type: ``conformer`` (with the conv module) or ``transformer``
            (without; set ``macaron_style: false`` for a vanilla Transformer block).
        macaron_style: add the half-step macaron FFN before self-attention.
        router_conf: :class:`LanguageRouter` arguments (``router_type``: ``tdnn`` for
            BLR-MoE, ``linear`` for LR-MoE; ``channels``, ``kernel_sizes``,
            ``dilations``, ``activation``, ``linear_skip``, ``conv_norm``,
            ``dropout_rate``, ``granularity``: ``frame`` or ``utterance`` routing).
            The flat ``router_*`` / ``routing`` keywords of older configs are mapped
            into it with a deprecation warning.
        expert_init: ``replicate`` (default): all experts of a layer start from the
            same random draw, so the untrained MoE equals a dense encoder whatever
            the routing; ``independent``: one draw per expert. Neither paper says
            how experts are initialised (our choice, a config option).
        router_detach: feed the router a stop-gradient copy of its input, so that the
            LID loss trains only the router and never the ASR weights.
        input_layer: ``conv2d`` (4x), ``conv2d2``, ``conv2d6``, ``conv2d8`` or
            ``linear`` (no subsampling).
        dropout_rate: residual / FFN dropout.
        positional_dropout_rate: dropout after the positional encoding.
        attention_dropout_rate: dropout on attention weights.
        activation_type: FFN and conv activation (ESPnet ``get_activation`` name).
        cnn_module_kernel: depthwise conv kernel (odd).
        cnn_module_norm: ``batch_norm`` or ``layer_norm`` in the conv module.
        zero_triu: as in ESPnet's relative-position attention.
        max_pos_emb_len: initial length of the positional encoding table.
        interctc_layer_idx: blocks (1-based, shared and MoE counted together, the last
            excluded) whose normalised output feeds an intermediate CTC loss
            (``model_conf.interctc_weight``), as ESPnet's ConformerEncoder.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 144,
        attention_heads: int = 4,
        linear_units: int = 576,
        num_shared_blocks: int = 4,
        num_moe_blocks: int = 2,
        langs: Optional[List[str]] = None,
        num_experts: Optional[int] = None,
        moe_attention_projections: List[str] = ["v", "o"],
        moe_ffn: str = "both",
        block_type: str = "conformer",
        macaron_style: bool = True,
        router_conf: Optional[Dict[str, Any]] = None,
        router_detach: bool = False,
        expert_init: str = "replicate",
        input_layer: str = "conv2d",
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        activation_type: str = "swish",
        cnn_module_kernel: int = 15,
        cnn_module_norm: str = "batch_norm",
        zero_triu: bool = False,
        max_pos_emb_len: int = 5000,
        interctc_layer_idx: List[int] = [],
        **legacy_router_args,
    ):
        super().__init__()
        router_conf = router_conf_with_legacy_args(router_conf, legacy_router_args)
        self.langs, self.num_experts = self._language_inventory(langs, num_experts)
        if moe_ffn not in ("both", "second", "none"):
            raise ValueError(
                f"moe_ffn must be 'both', 'second' or 'none', got {moe_ffn!r}"
            )
        if block_type not in ("conformer", "transformer"):
            raise ValueError(
                f"block_type must be 'conformer' or 'transformer', got {block_type!r}"
            )
        if input_layer not in SUBSAMPLING:
            raise ValueError(
                f"input_layer must be one of {sorted(SUBSAMPLING)}, got {input_layer!r}"
            )
        if expert_init not in ("replicate", "independent"):
            raise ValueError(
                f"expert_init must be 'replicate' or 'independent', got {expert_init!r}"
            )
        replicate = expert_init == "replicate"
        if num_shared_blocks < 0 or num_moe_blocks < 0:
            raise ValueError("num_shared_blocks and num_moe_blocks must be >= 0")
        self._output_size = output_size
        self.router_detach = router_detach
        num_blocks = num_shared_blocks + num_moe_blocks
        if any(not 0 < i < num_blocks for i in interctc_layer_idx):
            raise ValueError(
                f"interctc_layer_idx must name blocks 1..{num_blocks - 1} (the last block "
                f"already feeds the CTC loss), got {list(interctc_layer_idx)}"
            )
        self.interctc_layer_idx = sorted(interctc_layer_idx)
        self.interctc_use_conditioning = False  # ESPnet's model reads this attribute

        subsampling_class, self._time_convs = SUBSAMPLING[input_layer]
        pos_enc = RelPositionalEncoding(
            output_size, positional_dropout_rate, max_pos_emb_len
        )
        if subsampling_class is None:
            self.embed = torch.nn.Sequential(
                torch.nn.Linear(input_size, output_size),
                LayerNorm(output_size),
                torch.nn.Dropout(dropout_rate),
                pos_enc,
            )
        else:
            self.embed = subsampling_class(
                input_size, output_size, dropout_rate, pos_enc
            )

        activation = get_activation(activation_type)

        def block(moe: bool) -> EncoderBlock:
            def ffn(expert: bool) -> torch.nn.Module:
                if expert:
                    return MoEFeedForward(
                        self.num_experts,
                        output_size,
                        linear_units,
                        dropout_rate,
                        activation,
                        replicate_init=replicate,
                    )
                return PositionwiseFeedForward(
                    output_size, linear_units, dropout_rate, activation
                )

            if moe and moe_attention_projections:
                attention = MoERelPositionMultiHeadedAttention(
                    attention_heads,
                    output_size,
                    attention_dropout_rate,
                    self.num_experts,
                    moe_attention_projections,
                    zero_triu,
                    replicate_init=replicate,
                )
            else:
                attention = RelPositionMultiHeadedAttention(
                    attention_heads, output_size, attention_dropout_rate, zero_triu
                )
            return EncoderBlock(
                output_size,
                attention,
                ffn(moe and moe_ffn != "none"),
                ffn(moe and moe_ffn == "both") if macaron_style else None,
                MaskedConvolutionModule(
                    output_size, cnn_module_kernel, activation, cnn_module_norm
                )
                if block_type == "conformer"
                else None,
                dropout_rate,
            )

        # One list, shared blocks first, so parameter names line up with a dense
        # encoder of num_shared_blocks + num_moe_blocks blocks.
        self.num_shared_blocks = num_shared_blocks
        self.encoders = torch.nn.ModuleList(
            [block(False) for _ in range(num_shared_blocks)]
            + [block(True) for _ in range(num_moe_blocks)]
        )
        self.router = LanguageRouter(output_size, self.num_experts, **router_conf)
        self.after_norm = LayerNorm(output_size)

    @staticmethod
    def _language_inventory(
        langs: Optional[List[str]], num_experts: Optional[int]
    ) -> Tuple[Optional[List[str]], int]:
        if langs is None and num_experts is None:
            raise ValueError(
                "BLRMoEEncoder needs its languages (one expert each): the ASR task "
                "injects encoder_conf.langs from --lang_list; outside the task, pass "
                "langs=[...] or num_experts=N"
            )
        if langs is not None:
            if not langs or len(set(langs)) != len(langs):
                raise ValueError(f"langs must be non-empty and distinct, got {langs}")
            if num_experts is not None and num_experts != len(langs):
                raise ValueError(
                    f"num_experts={num_experts} but langs has {len(langs)} languages "
                    f"{langs}; drop num_experts or make them agree"
                )
            return list(langs), len(langs)
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        return None, num_experts

    def output_size(self) -> int:
        return self._output_size

    def subsampled_lengths(self, ilens: torch.Tensor) -> torch.Tensor:
        """Output frames for each input length (what the input layer's convs keep)."""
        olens = ilens
        for kernel, stride in self._time_convs:
            olens = torch.div(olens - kernel, stride, rounding_mode="floor") + 1
        return olens.clamp(min=0)

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """ESPnet's encoder contract: :meth:`forward_with_aux` without the aux dict."""
        out, olens, _ = self.forward_with_aux(xs_pad, ilens)
        return out, olens, None

    def forward_with_aux(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """Encode a padded batch [B, T, input_size] with valid lengths [B].

        Returns:
            [B, T', output_size] (with ``interctc_layer_idx``: ``(output, [(block,
            normalised block output), ...])``), output lengths [B], and the aux dict
            (``moe_interface``): ``lid_logits``, ``lid_lengths`` and, with MoE blocks,
            ``expert_index`` and ``route_frac_<lang>``.
        """
        if self._time_convs:
            too_short, limit = check_short_utt(self.embed, xs_pad.size(1))
            if too_short:
                raise TooShortUttError(
                    f"has {xs_pad.size(1)} frames and is too short for subsampling "
                    f"(it needs more than {limit} frames), return empty results",
                    xs_pad.size(1),
                    limit,
                )
            (x, pos_emb), _ = self.embed(xs_pad, None)
        else:
            x, pos_emb = self.embed(xs_pad)
        olens = self.subsampled_lengths(ilens)
        frames = torch.arange(x.size(1), device=x.device)
        valid = frames < olens.to(x.device).unsqueeze(1)

        intermediate: List[Tuple[int, torch.Tensor]] = []

        def tap(index: int) -> None:  # 1-based block index
            if index in self.interctc_layer_idx:
                intermediate.append((index, self.after_norm(x)))

        for i, block in enumerate(self.encoders[: self.num_shared_blocks]):
            x = block(x, pos_emb, valid)
            tap(i + 1)

        aux: Dict[str, torch.Tensor] = {"lid_lengths": olens}
        lid_logits = self.router(x.detach() if self.router_detach else x, valid)
        aux["lid_logits"] = lid_logits
        moe_blocks = self.encoders[self.num_shared_blocks :]
        if len(moe_blocks):
            expert_index = self.router.select_experts(lid_logits.detach(), valid)
            plan = DispatchPlan.build(expert_index, self.num_experts, valid=valid)
            aux["expert_index"] = expert_index  # per frame, for routing analysis
            for i, block in enumerate(moe_blocks):
                x = block(x, pos_emb, valid, plan)
                tap(self.num_shared_blocks + i + 1)
            fractions = route_fractions(plan)
            for e in range(self.num_experts):
                aux[f"route_frac_{self._expert_name(e)}"] = fractions[e]
        if intermediate:
            return (self.after_norm(x), intermediate), olens, aux
        return self.after_norm(x), olens, aux

    # Buffers of the removed warm-up state machine (start rules, step counter): dropped
    # on load, so exp dirs trained before its removal still decode.
    _LEGACY_BUFFERS = ("num_updates", "moe_state", "ctc_emission", "ctc_cer")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._LEGACY_BUFFERS:
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _expert_name(self, e: int) -> str:
        return self.langs[e] if self.langs is not None else str(e)

    def set_language_prior(
        self,
        allowed: Optional[Sequence[int]],
        mode: str = "hard",
        soft_floor: float = 0.1,
    ) -> None:
        """Restrict routing to languages ``allowed`` (indices into ``langs``).

        ``hard``: languages outside the set are masked out of the router's arg-max
        (expert pruning) and their reported ``lid_logits`` are lowered by 1e4;
        ``soft``: ``log(soft_floor)`` is added to their logits. ``None`` removes the
        prior.
        """
        self.router.set_prior(allowed, mode, soft_floor)

    def router_parameters(self) -> Iterator[torch.nn.Parameter]:
        """Parameters of the language router (for router-only fine-tuning)."""
        return self.router.parameters()

    def non_router_parameters(self) -> Iterator[torch.nn.Parameter]:
        """Every parameter except the router's."""
        router = {id(p) for p in self.router.parameters()}
        return (p for p in self.parameters() if id(p) not in router)
