"""Relative-position multi-head self-attention with language-expert projections."""
import math
from typing import Sequence

import torch
from espnet2.legacy.nets.pytorch_backend.transformer.attention import (
    RelPositionMultiHeadedAttention,
)

from espnet_plugins.asr.moe.dispatch import DispatchPlan
from espnet_plugins.asr.moe.expert_linear import ExpertLinear

# Projection letter -> attribute name in ESPnet's attention modules.
PROJECTION_NAMES = {
    "q": "linear_q",
    "k": "linear_k",
    "v": "linear_v",
    "o": "linear_out",
}


class MoERelPositionMultiHeadedAttention(RelPositionMultiHeadedAttention):
    """ESPnet's ``RelPositionMultiHeadedAttention`` with some projections as experts.

    BLR-MoE (arXiv 2501.12602) makes the value and output projections language
    experts and keeps query/key shared; ``expert_projections`` picks any subset of
    ``q, k, v, o``. Chosen projections become :class:`ExpertLinear` under the same
    attribute names (``linear_v`` ...); the others, the positional projection and the
    positional biases stay shared, so with every token routed to expert e this module
    equals the stock module whose projections are expert e's.

    The input is gathered into expert-sorted order once for all expert q/k/v
    projections; the output projection gathers the attention context.

    Args:
        n_head: number of heads.
        n_feat: model size.
        dropout_rate: attention dropout.
        num_experts: number of experts E.
        expert_projections: subset of ``("q", "k", "v", "o")``.
        zero_triu: as in ESPnet.
        replicate_init: every expert starts from the same weights (ExpertLinear).
    """

    def __init__(
        self,
        n_head: int,
        n_feat: int,
        dropout_rate: float,
        num_experts: int,
        expert_projections: Sequence[str] = ("v", "o"),
        zero_triu: bool = False,
        replicate_init: bool = False,
    ):
        super().__init__(n_head, n_feat, dropout_rate, zero_triu)
        unknown = set(expert_projections) - set(PROJECTION_NAMES)
        if unknown or len(set(expert_projections)) != len(expert_projections):
            raise ValueError(
                f"expert_projections must be distinct letters among q, k, v, o; "
                f"got {list(expert_projections)}"
            )
        self.expert_projections = tuple(p for p in "qkvo" if p in expert_projections)
        for p in self.expert_projections:
            expert = ExpertLinear(
                num_experts, n_feat, n_feat, replicate_init=replicate_init
            )
            setattr(self, PROJECTION_NAMES[p], expert)

    def _project(self, p, x, plan, x_sorted=None):
        """Projection ``p`` of ``x``; expert projections reuse ``x_sorted`` if given."""
        layer = getattr(self, PROJECTION_NAMES[p])
        if not isinstance(layer, ExpertLinear):
            return layer(x)
        if x_sorted is None:
            x_sorted = plan.gather(x)
        return plan.scatter(layer(x_sorted, plan))

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        mask: torch.Tensor,
        plan: DispatchPlan,
    ) -> torch.Tensor:
        """Self-attention with relative positions.

        Args:
            x: [B, T, n_feat] (queries, keys and values all come from ``x``).
            pos_emb: [1, 2T-1, n_feat] from ESPnet's ``RelPositionalEncoding``.
            mask: BoolTensor [B, 1, T], True on valid frames.
            plan: the batch's dispatch plan (``plan.token_shape == (B, T)``).

        Returns:
            [B, T, n_feat].
        """
        n_batch = x.size(0)
        x_sorted = (
            plan.gather(x)
            if set(self.expert_projections) & {"q", "k", "v"}
            else None
        )
        q, k, v = (
            self._project(name, x, plan, x_sorted).view(n_batch, -1, self.h, self.d_k)
            for name in "qkv"
        )  # (batch, time, head, d_k)
        k = k.transpose(1, 2)  # (batch, head, time, d_k)
        v = v.transpose(1, 2)

        pos = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k)
        pos = pos.transpose(1, 2)  # (batch, head, 2*time-1, d_k)
        q_with_bias_u = (q + self.pos_bias_u).transpose(1, 2)
        q_with_bias_v = (q + self.pos_bias_v).transpose(1, 2)
        # Transformer-XL terms (a)+(c) and (b)+(d), as in ESPnet.
        matrix_ac = torch.matmul(q_with_bias_u, k.transpose(-2, -1))
        matrix_bd = self.rel_shift(torch.matmul(q_with_bias_v, pos.transpose(-2, -1)))
        scores = (matrix_ac + matrix_bd) / math.sqrt(self.d_k)

        key_pad = mask.unsqueeze(1).eq(0)  # (batch, 1, 1, time)
        scores = scores.masked_fill(key_pad, torch.finfo(scores.dtype).min)
        self.attn = torch.softmax(scores, dim=-1).masked_fill(key_pad, 0.0)
        context = torch.matmul(self.dropout(self.attn), v)  # (batch, head, time, d_k)
        context = context.transpose(1, 2).reshape(n_batch, -1, self.h * self.d_k)
        return self._project("o", context, plan)
