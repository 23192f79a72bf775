"""Language router shared by all MoE blocks of a BLR-MoE / LR-MoE encoder."""
import math
from typing import Optional, Sequence

import torch
from espnet2.legacy.nets.pytorch_backend.transformer.layer_norm import LayerNorm

from espnet_plugins.asr.moe.masked_convolution import masked_batch_norm
from espnet_plugins.inference.ctc_decoding import utterance_log_posterior

# Logit offset of pruned languages under a hard prior: dwarfs any real logit gap.
HARD_PRIOR_PENALTY = -1e4


class LanguageRouter(torch.nn.Module):
    """Frame-level language identifier whose arg-max picks each frame's expert.

    ``router_type="tdnn"`` (BLR-MoE, arXiv 2501.12602): dilated 1-D convolutions over
    time (Conv1d -> activation -> norm each), then Linear -> activation -> Dropout ->
    Linear to one logit per language. Default activation swish: ReLU routers can die
    while CTC sits on its plateau (docs/model_notes.md). Default kernels (5, 3, 3),
    dilations (1, 2, 3): an x-vector TDNN's 15 frames of context. Padded frames are
    zeroed before every convolution, so valid frames' logits do not depend on the batch.

    ``router_type="linear"`` (LR-MoE, arXiv 2307.05956): one linear layer per frame.

    Both start with a LayerNorm because they read a pre-LN residual stream.

    Routing (:meth:`select_experts`) is top-1 per frame (``granularity="frame"``) or
    one expert per utterance (``"utterance"``: arg-max of the mean log-probability
    over valid frames). Routing is a hard arg-max: the router learns only from the
    LID loss, as in LR-MoE/BLR-MoE.

    A language prior (:meth:`set_prior`) is added to the logits before routing: hard
    (expert pruning: languages outside the allowed set are never routed to) or soft
    (``log(soft_floor)`` added to their logits).

    Args:
        input_size: size of the encoder features it reads.
        num_languages: number of languages = experts.
        router_type: ``"tdnn"`` or ``"linear"``.
        channels: TDNN channels and FFN hidden size.
        kernel_sizes: kernel size of each TDNN layer (odd).
        dilations: dilation of each TDNN layer (same length as ``kernel_sizes``).
        dropout_rate: dropout in the TDNN and FFN.
        granularity: ``"frame"`` or ``"utterance"``.
        activation: TDNN / FFN nonlinearity: ``swish`` (default), ``relu``, ``gelu``
            or ``leaky_relu``.
        conv_norm: TDNN only: normalisation after each TDNN layer's activation:
            ``layer_norm`` (each frame over its channels), ``batch_norm`` (each channel
            over the batch's valid frames, as in an x-vector TDNN) or ``none`` (the
            paper does not say).
        linear_skip: TDNN only: add a linear read-out of the normalised input (the
            linear router) to the TDNN's logits, so a language direction of the
            features is learnt at once and the TDNN adds context on top.
    """

    def __init__(
        self,
        input_size: int,
        num_languages: int,
        router_type: str = "tdnn",
        channels: int = 512,
        kernel_sizes: Sequence[int] = (5, 3, 3),
        dilations: Sequence[int] = (1, 2, 3),
        dropout_rate: float = 0.1,
        granularity: str = "frame",
        activation: str = "swish",
        linear_skip: bool = False,
        conv_norm: str = "layer_norm",
    ):
        super().__init__()
        activations = {
            "swish": torch.nn.SiLU,
            "relu": torch.nn.ReLU,
            "gelu": torch.nn.GELU,
            "leaky_relu": torch.nn.LeakyReLU,
        }
        if activation not in activations:
            raise ValueError(
                f"router activation must be one of {sorted(activations)}, got {activation!r}"
            )
        self.activation = activations[activation]()
        if granularity not in ("frame", "utterance"):
            raise ValueError(
                f"routing must be 'frame' or 'utterance', got {granularity!r}"
            )
        if conv_norm not in ("layer_norm", "batch_norm", "none"):
            raise ValueError(
                "router conv_norm must be 'layer_norm', 'batch_norm' or 'none', "
                f"got {conv_norm!r}"
            )
        self.router_type = router_type
        self.conv_norm = conv_norm
        self.granularity = granularity
        self.num_languages = num_languages
        self.norm_in = LayerNorm(input_size)
        self.convs = torch.nn.ModuleList()
        self.conv_norms = torch.nn.ModuleList()
        if router_type == "tdnn":
            if len(kernel_sizes) != len(dilations) or not kernel_sizes:
                raise ValueError(
                    "router_kernel_sizes and router_dilations need one entry per "
                    f"TDNN layer; got {list(kernel_sizes)} and {list(dilations)}"
                )
            if any(k % 2 != 1 for k in kernel_sizes):
                raise ValueError(
                    f"router_kernel_sizes must be odd ('same' padding), got "
                    f"{list(kernel_sizes)}"
                )
            in_channels = input_size
            for k, d in zip(kernel_sizes, dilations):
                self.convs.append(
                    torch.nn.Conv1d(
                        in_channels, channels, k, dilation=d, padding=d * (k - 1) // 2
                    )
                )
                self.conv_norms.append(
                    LayerNorm(channels)
                    if conv_norm == "layer_norm"
                    else torch.nn.BatchNorm1d(channels)
                    if conv_norm == "batch_norm"
                    else torch.nn.Identity()
                )
                in_channels = channels
            self.output = torch.nn.Sequential(
                torch.nn.Linear(channels, channels),
                activations[activation](),
                torch.nn.Dropout(dropout_rate),
                torch.nn.Linear(channels, num_languages),
            )
            self.skip = (
                torch.nn.Linear(input_size, num_languages) if linear_skip else None
            )
        elif router_type == "linear":
            if linear_skip:
                raise ValueError(
                    "linear_skip adds a linear read-out to a TDNN router; "
                    "router_type 'linear' is one already: drop linear_skip"
                )
            self.skip = None
            self.output = torch.nn.Linear(input_size, num_languages)
        else:
            raise ValueError(
                f"router_type must be 'tdnn' or 'linear', got {router_type!r}"
            )
        self.dropout = torch.nn.Dropout(dropout_rate)
        # Inference-time language prior (not part of checkpoints): a bias added to the
        # logits and, in hard mode, the mask of languages routing may choose.
        self.register_buffer("prior_bias", None, persistent=False)
        self.register_buffer("prior_allowed", None, persistent=False)

    def set_prior(
        self,
        allowed: Optional[Sequence[int]],
        mode: str = "hard",
        soft_floor: float = 0.1,
    ) -> None:
        """Restrict routing to the languages with indices ``allowed`` (None: no prior).

        ``mode="hard"``: other languages' experts are pruned: routing never picks them,
        and :data:`HARD_PRIOR_PENALTY` is added to their logits so that LID read from
        the logits agrees (finite rather than ``-inf`` so that log-softmax, masked
        averages and CE on the logits stay free of NaN/inf).
        ``mode="soft"``: ``log(soft_floor)`` is added to them, so strong evidence for
        another language can still win.
        """
        if allowed is None:
            self.prior_bias = self.prior_allowed = None
            return
        allowed = sorted(set(int(i) for i in allowed))
        if not allowed or allowed[0] < 0 or allowed[-1] >= self.num_languages:
            raise ValueError(
                f"allowed must be a non-empty set of language indices in "
                f"[0, {self.num_languages}), got {allowed}"
            )
        if mode == "hard":
            penalty = HARD_PRIOR_PENALTY
        elif mode == "soft":
            if not 0.0 < soft_floor <= 1.0:
                raise ValueError(f"soft_floor must be in (0, 1], got {soft_floor}")
            penalty = math.log(soft_floor)
        else:
            raise ValueError(f"prior mode must be 'hard' or 'soft', got {mode!r}")
        bias = torch.full(
            (self.num_languages,), penalty, device=self.norm_in.weight.device
        )
        bias[allowed] = 0.0
        self.prior_bias = bias
        self.prior_allowed = bias == 0.0 if mode == "hard" else None

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Language logits per frame, with the prior (if any) applied.

        Args:
            x: [B, T, input_size].
            valid: BoolTensor [B, T], True on valid frames.

        Returns:
            [B, T, num_languages].
        """
        h = x_in = self.norm_in(x)
        pad = ~valid.unsqueeze(-1)
        for conv, norm in zip(self.convs, self.conv_norms):
            h = h.masked_fill(pad, 0.0)
            h = conv(h.transpose(1, 2)).transpose(1, 2)
            h = self.activation(h)
            if isinstance(norm, torch.nn.BatchNorm1d):
                # statistics over valid frames only, so padding cannot move them
                h = masked_batch_norm(norm, h.transpose(1, 2), valid).transpose(1, 2)
            else:
                h = norm(h)
            h = self.dropout(h)
        logits = self.output(h)
        if self.skip is not None:
            logits = logits + self.skip(x_in)
        if self.prior_bias is not None:
            logits = logits + self.prior_bias.to(logits.dtype)
        return logits

    def select_experts(self, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Expert index of every frame, LongTensor [B, T] (padded frames: arbitrary)."""
        if self.prior_allowed is not None:
            logits = logits.masked_fill(~self.prior_allowed, -math.inf)
        if self.granularity == "frame":
            return logits.argmax(-1)
        utterance = utterance_log_posterior(logits, valid.sum(1)).argmax(-1)
        return utterance.unsqueeze(1).expand(-1, logits.size(1))
