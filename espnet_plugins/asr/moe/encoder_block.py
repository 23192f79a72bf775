"""Padding-invariant Conformer / Transformer block whose sublayers may be experts."""
from typing import Optional

import torch
from espnet2.legacy.nets.pytorch_backend.transformer.layer_norm import LayerNorm

from espnet_plugins.asr.moe.dispatch import DispatchPlan
from espnet_plugins.asr.moe.masked_convolution import MaskedConvolutionModule
from espnet_plugins.asr.moe.moe_attention import MoERelPositionMultiHeadedAttention
from espnet_plugins.asr.moe.moe_feed_forward import MoEFeedForward


class EncoderBlock(torch.nn.Module):
    """Pre-LayerNorm Conformer block (Transformer block without a conv module).

    Same structure, parameter names and arithmetic as ESPnet's Conformer
    ``EncoderLayer`` with ``normalize_before=True, concat_after=False``::

        x = x + 0.5 * FFN_macaron(LN(x))        (if feed_forward_macaron)
        x = x + MHSA(LN(x))
        x = x + Conv(LN(x))                      (if conv_module; Conformer)
        x = x + ff_scale * FFN(LN(x))
        x = LN(x)                                (if conv_module; Conformer)

    Each sublayer may be a stock ESPnet module or its expert version
    (:class:`MoERelPositionMultiHeadedAttention`, :class:`MoEFeedForward`), which then
    routes with the dispatch plan passed to :meth:`forward`. The conv module is a
    :class:`MaskedConvolutionModule`, so the block is padding invariant: valid frames
    do not depend on how many padded frames follow them.

    Args:
        size: model size.
        self_attn: ``RelPositionMultiHeadedAttention`` or its MoE version.
        feed_forward: ``PositionwiseFeedForward`` or :class:`MoEFeedForward`.
        feed_forward_macaron: the same kinds, or None (no macaron FFN).
        conv_module: :class:`MaskedConvolutionModule` or None (Transformer block).
        dropout_rate: residual dropout.
    """

    def __init__(
        self,
        size: int,
        self_attn: torch.nn.Module,
        feed_forward: torch.nn.Module,
        feed_forward_macaron: Optional[torch.nn.Module],
        conv_module: Optional[MaskedConvolutionModule],
        dropout_rate: float,
    ):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.feed_forward_macaron = feed_forward_macaron
        self.conv_module = conv_module
        self.norm_ff = LayerNorm(size)
        self.norm_mha = LayerNorm(size)
        if feed_forward_macaron is not None:
            self.norm_ff_macaron = LayerNorm(size)
            self.ff_scale = 0.5
        else:
            self.ff_scale = 1.0
        if conv_module is not None:
            self.norm_conv = LayerNorm(size)
            self.norm_final = LayerNorm(size)
        self.dropout = torch.nn.Dropout(dropout_rate)

    @staticmethod
    def _feed_forward(ff, x, plan):
        return ff(x, plan) if isinstance(ff, MoEFeedForward) else ff(x)

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        valid: torch.Tensor,
        plan: Optional[DispatchPlan] = None,
    ) -> torch.Tensor:
        """Encode one block.

        Args:
            x: [B, T, size].
            pos_emb: [1, 2T-1, size] relative positional embedding.
            valid: BoolTensor [B, T], True on valid frames.
            plan: dispatch plan of the batch; required if a sublayer is an expert.

        Returns:
            [B, T, size]; padded frames hold unspecified values.
        """
        if self.feed_forward_macaron is not None:
            h = self._feed_forward(
                self.feed_forward_macaron, self.norm_ff_macaron(x), plan
            )
            x = x + self.ff_scale * self.dropout(h)

        h = self.norm_mha(x)
        mask = valid.unsqueeze(1)
        if isinstance(self.self_attn, MoERelPositionMultiHeadedAttention):
            h = self.self_attn(h, pos_emb, mask, plan)
        else:
            h = self.self_attn(h, h, h, pos_emb, mask)
        x = x + self.dropout(h)

        if self.conv_module is not None:
            x = x + self.dropout(self.conv_module(self.norm_conv(x), valid))

        h = self._feed_forward(self.feed_forward, self.norm_ff(x), plan)
        x = x + self.ff_scale * self.dropout(h)

        if self.conv_module is not None:
            x = self.norm_final(x)
        return x
