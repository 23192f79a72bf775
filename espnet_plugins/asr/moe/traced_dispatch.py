"""Traceable top-1 dispatch: the form of :class:`DispatchPlan` that ONNX export records."""
from typing import Optional

import torch


class TracedDispatchPlan:
    """Expert-contiguous ordering of a batch's tokens, computed with graph ops only.

    :class:`~espnet_plugins.asr.moe.dispatch.DispatchPlan` copies the per-expert
    sizes to the host once (``tolist``) and loops over Python ints: a trace would
    freeze those sizes, so the exported graph would be right only for the routing
    of the example input. This plan keeps every size a tensor, so ``torch.jit``
    tracing (and the ONNX exporter built on it) records a graph that is correct for
    any batch size, length and routing:

    1. padded tokens go to an extra bucket E; ``argsort`` orders the tokens by
       expert (ONNX ``TopK``), a second ``argsort`` gives the inverse permutation;
    2. per-expert row counts (one-hot sum) and their ``cumsum`` give each expert's
       slice ``[start_e, end_e)`` of the sorted buffer as 0-d tensors;
    3. :meth:`linear` loops over the E experts (E is fixed by the weights, so the
       loop unrolls into E ``Slice -> MatMul -> Add`` branches whose row counts
       are dynamic) and concatenates the slices; the padding bucket gets zeros
       without being computed;
    4. :meth:`scatter` is one ``Gather`` by the inverse permutation.

    Each token is multiplied by one expert's weights only: the cost is that of a
    dense layer plus two sorts of the token indices. The alternatives were worse
    for export: gathering ``W[expert_index]`` per token (``[N, in, out]`` weights,
    a batched matmul) costs N copies of a weight matrix in memory, and computing
    every expert then masking costs E times the matmuls.

    Only top-1, ungated routing (LR-/BLR-MoE) is supported; rows of the sorted
    buffer are in a different order than :class:`DispatchPlan`'s (ties are not
    sorted stably), which does not change any token's result.

    Args:
        expert_index: LongTensor [B, T], each token's expert.
        num_experts: number of experts E.
        valid: optional BoolTensor [B, T]; False tokens (padding) are not computed
            and come back from :meth:`scatter` as zeros.
    """

    top_k = 1

    def __init__(
        self,
        expert_index: torch.Tensor,
        num_experts: int,
        valid: Optional[torch.Tensor] = None,
    ):
        self.num_experts = num_experts
        self.token_shape = tuple(expert_index.shape)
        flat = expert_index.reshape(-1)
        if valid is not None:
            flat = flat.masked_fill(~valid.reshape(-1), num_experts)
        self.order = torch.argsort(flat)
        self.inverse = torch.argsort(self.order)
        buckets = torch.arange(num_experts + 1, device=flat.device)
        counts = (flat.unsqueeze(1) == buckets).sum(0)  # [E + 1]
        self.counts = counts[:num_experts]
        self.ends = torch.cumsum(counts, 0)  # end row of each bucket's slice
        self.num_rows = self.ends[num_experts - 1]  # routed rows M (0-d tensor)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Token-ordered ``[B, T, D]`` -> expert-sorted ``[B*T, D]`` (padding last)."""
        return x.reshape(-1, x.size(-1)).index_select(0, self.order)

    def linear(
        self,
        x_sorted: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Per-expert affine map of the sorted buffer: weight [E, in, out], bias [E, out]."""
        pieces = []
        start = self.ends[:1] * 0
        for e in range(self.num_experts):
            end = self.ends[e : e + 1]
            # Slices with tensor bounds: the tracer records them as dynamic Slice ops.
            rows = x_sorted[start[0] : end[0]]
            pieces.append(
                torch.matmul(rows, weight[e])
                if bias is None
                else torch.addmm(bias[e], rows, weight[e])
            )
            start = end
        padding = x_sorted[start[0] :, :1]
        pieces.append(torch.zeros_like(padding).expand(-1, weight.size(2)))
        return torch.cat(pieces, 0)

    def scatter(self, y: torch.Tensor) -> torch.Tensor:
        """Expert-sorted ``[B*T, D]`` -> token-ordered ``[B, T, D]``."""
        return y.index_select(0, self.inverse).view(*self.token_shape, y.size(-1))
