"""Token dispatch for expert layers: the one primitive behind attention- and FFN-MoE.

MegaBlocks-style dropless dispatch (Gale et al., 2022, arXiv 2211.15841) without
padding experts to a capacity:

1. :meth:`DispatchPlan.build` sorts the tokens by expert once (``argsort`` +
   ``bincount``; the per-expert sizes are copied to the host with ONE ``tolist``, the
   only device sync of a plan).
2. :meth:`DispatchPlan.gather` permutes tokens into expert-contiguous order.
3. :func:`grouped_linear` runs one matmul per expert on its contiguous slice of that
   sorted buffer (the loop over the E slices is the only Python loop; empty experts
   are skipped), or, where PyTorch's grouped GEMM applies (CUDA, bf16, SM >= 80: see
   :func:`grouped_mm_applies`), all experts in one ``torch.nn.functional.grouped_mm``
   kernel. Consecutive expert layers (e.g. the two FFN linears) stay in sorted
   order between them.
4. :meth:`DispatchPlan.scatter` puts the rows back into token order (weighting by the
   gate and summing replicas for top-k).

Under ``torch.jit`` tracing (ONNX export) :meth:`DispatchPlan.build` returns a
:class:`~espnet_plugins.asr.moe.traced_dispatch.TracedDispatchPlan` instead: the same
sort -> gather -> per-expert matmul -> scatter with every size kept a tensor, since a
trace would freeze the host-side sizes above into the graph.

BLR-MoE routes every MoE block with the same shared router, so one plan serves every
expert projection of every MoE block in a forward pass.

Gather, scatter and the grouped matmul are custom autograd functions: gather and
scatter are adjoint, so each one's backward is the other's forward (a permutation
backward is an ``index_select`` by the inverse permutation instead of the
zeros + ``index_add`` that ``index_select``'s stock backward does), and the grouped
matmul writes every slice straight into preallocated outputs instead of slicing and
concatenating through autograd (whose backward would allocate a full-size zero
gradient per slice).

:func:`dense_oracle_expert_linear` (compute every expert for every token, then select)
is the reference the tests compare against; it is E times more expensive and is not
used by any model.

Experts without tokens: both matmul paths return a zero gradient for their slice of
the stacked weight (the loop zero-fills it; the grouped GEMM's is zeroed explicitly,
since some GPUs' kernels leave it non-zero: pytorch/pytorch#172439). So every expert
parameter is in the autograd graph every step, which DDP with
``find_unused_parameters=False`` requires (an expert that got no token on one rank
still joins the gradient all-reduce).
"""
import contextlib
import itertools
import logging
import math
import os
from typing import List, Optional, Tuple

import torch

from espnet_plugins.asr.moe.traced_dispatch import TracedDispatchPlan


class DispatchPlan:
    """Expert-contiguous ordering of the tokens of one batch.

    Build it with :meth:`build`. Rows of the sorted buffer are grouped by expert:
    rows ``offsets[e]:offsets[e + 1]`` belong to expert ``e``. With top-k routing a
    token appears once per selected expert. Tokens marked invalid (padding) are left
    out of the sorted buffer and come back from :meth:`scatter` as zeros.

    Attributes:
        token_shape: leading shape of the token tensors (e.g. ``(B, T)``).
        num_tokens: ``prod(token_shape)``.
        num_experts: number of experts E.
        top_k: experts per token.
        sorted_token: LongTensor [M], the token (flat index) of each sorted row.
        sorted_gate: Tensor [M] or None, the gate weight of each sorted row
            (None for ungated top-1 routing, where rows are copied back as they are).
        inverse: LongTensor [N] or None, the sorted row of each token; only set when
            the plan is a plain permutation (top-1, nothing dropped).
        counts: LongTensor [E] on the tokens' device, tokens routed to each expert.
        sizes: per-expert row counts on the host (from the plan's one device sync).
        offsets: start row of each expert's slice, plus the total ``M`` at the end.
        slices: ``(expert, start, end)`` of every expert that got rows.
        empty_experts: experts that got no row.
    """

    def __init__(
        self,
        token_shape: Tuple[int, ...],
        num_experts: int,
        top_k: int,
        sorted_token: torch.Tensor,
        sorted_gate: Optional[torch.Tensor],
        inverse: Optional[torch.Tensor],
        counts: torch.Tensor,
        sizes: List[int],
    ):
        self.token_shape = token_shape
        self.num_tokens = math.prod(token_shape)
        self.num_experts = num_experts
        self.top_k = top_k
        self.sorted_token = sorted_token
        self.sorted_gate = sorted_gate
        self.inverse = inverse
        self.counts = counts
        self.sizes = sizes
        self.offsets = offsets = [0, *itertools.accumulate(sizes)]
        # (expert, start, end) of every non-empty expert: the grouped matmul's loop.
        self.slices = [
            (e, offsets[e], offsets[e + 1]) for e in range(num_experts) if sizes[e]
        ]
        self.empty_experts = [e for e in range(num_experts) if not sizes[e]]

    @classmethod
    def build(
        cls,
        expert_index: torch.Tensor,
        num_experts: int,
        gate: Optional[torch.Tensor] = None,
        valid: Optional[torch.Tensor] = None,
    ) -> "DispatchPlan":
        """Sort tokens by expert.

        Args:
            expert_index: LongTensor with values in ``[0, num_experts)``. Top-1
                routing: shape ``token_shape`` (e.g. [B, T]). Top-k routing: shape
                ``token_shape + (k,)`` and ``gate`` must be given.
            num_experts: number of experts E.
            gate: None for ungated top-1 routing (each token's row is copied back
                unscaled, as in LR-/BLR-MoE's hard language routing), or a tensor
                shaped like ``expert_index`` whose entries weight each selected
                expert's output in :meth:`scatter` (top-k mixture).
            valid: BoolTensor of shape ``token_shape``; False tokens (padding) are
                not routed at all and :meth:`scatter` returns zeros for them.
        """
        if torch.jit.is_tracing():
            if gate is not None:
                raise NotImplementedError(
                    "tracing (ONNX export) supports top-1 ungated routing only; "
                    "export a model with LR-/BLR-MoE hard routing"
                )
            return TracedDispatchPlan(expert_index, num_experts, valid)
        if gate is None:
            token_shape = tuple(expert_index.shape)
            top_k = 1
        else:
            if gate.shape != expert_index.shape or expert_index.dim() < 2:
                raise ValueError(
                    "top-k routing needs expert_index and gate of the same shape "
                    f"token_shape + (k,), got {tuple(expert_index.shape)} and "
                    f"{tuple(gate.shape)}"
                )
            token_shape = tuple(expert_index.shape[:-1])
            top_k = expert_index.shape[-1]
        flat = expert_index.reshape(-1)
        if valid is not None:
            if tuple(valid.shape) != token_shape:
                raise ValueError(
                    f"valid must have the token shape {token_shape}, "
                    f"got {tuple(valid.shape)}"
                )
            # Padded tokens go to an extra bucket E, which sorts last and is cut off.
            keep = valid.reshape(-1, 1).expand(-1, top_k).reshape(-1)
            flat = flat.masked_fill(~keep, num_experts)
        # scatter_add_ rather than bincount: bincount on CUDA syncs to size its output.
        counts_all = torch.zeros(
            num_experts + 1, dtype=torch.long, device=flat.device
        ).scatter_add_(0, flat, torch.ones_like(flat))
        sizes = counts_all.tolist()  # the plan's one host sync
        num_rows = len(flat) - sizes[num_experts]
        order = torch.argsort(flat, stable=True)[:num_rows]
        sorted_token = order // top_k if top_k > 1 else order
        sorted_gate = None if gate is None else gate.reshape(-1)[order]
        inverse = None
        if top_k == 1 and num_rows == len(flat):
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(num_rows, device=order.device)
        return cls(
            token_shape,
            num_experts,
            top_k,
            sorted_token,
            sorted_gate,
            inverse,
            counts_all[:num_experts],
            sizes[:num_experts],
        )

    @property
    def num_rows(self) -> int:
        """Rows M of the sorted buffer (routed token-expert pairs)."""
        return self.offsets[-1]

    def group_ends(self) -> torch.Tensor:
        """int32 [E] on the tokens' device: end row of each expert's slice (the
        ``offs`` of ``grouped_mm``); computed on the device, no host sync."""
        if getattr(self, "_group_ends", None) is None:
            self._group_ends = self.counts.cumsum(0).to(torch.int32)
        return self._group_ends

    def row_expert(self) -> torch.Tensor:
        """LongTensor [M]: the expert of each sorted row."""
        if getattr(self, "_row_expert", None) is None:
            experts = torch.arange(self.num_experts, device=self.counts.device)
            self._row_expert = experts.repeat_interleave(
                self.counts, output_size=self.num_rows
            )
        return self._row_expert

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Token-ordered ``[*token_shape, D]`` -> expert-sorted ``[M, D]``."""
        if tuple(x.shape[:-1]) != self.token_shape:
            raise ValueError(
                f"expected tokens of shape {self.token_shape} + (D,), "
                f"got {tuple(x.shape)}"
            )
        return _Gather.apply(x.reshape(self.num_tokens, x.size(-1)), self)

    def scatter(self, y: torch.Tensor) -> torch.Tensor:
        """Expert-sorted ``[M, D]`` -> token-ordered ``[*token_shape, D]``.

        Rows are weighted by their gate (top-k) and a token's rows are summed; tokens
        left out by ``valid`` get zeros.
        """
        if y.dim() != 2 or y.size(0) != self.num_rows:
            raise ValueError(
                f"expected a sorted buffer of shape ({self.num_rows}, D), "
                f"got {tuple(y.shape)}"
            )
        if self.sorted_gate is not None:
            y = y * self.sorted_gate.unsqueeze(1).to(y.dtype)
        return _Scatter.apply(y, self).view(*self.token_shape, y.size(1))

    def linear(
        self, x_sorted: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """:func:`grouped_linear` on this plan's sorted buffer."""
        if weight.dim() != 3 or weight.size(0) != self.num_experts:
            raise ValueError(
                f"weight must be [E={self.num_experts}, in, out], got {tuple(weight.shape)}"
            )
        if x_sorted.dim() != 2 or x_sorted.size(0) != self.num_rows:
            raise ValueError(
                f"x_sorted must be [{self.num_rows}, in] (the plan's sorted buffer), "
                f"got {tuple(x_sorted.shape)}"
            )
        # Under autocast the custom function would see mixed dtypes; cast like F.linear.
        device_type = x_sorted.device.type
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            x_sorted, weight = x_sorted.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
            with torch.autocast(device_type, enabled=False):
                return _apply(x_sorted, weight, bias, self)
        return _apply(x_sorted, weight, bias, self)

    def _to_sorted(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, self.sorted_token)

    def _to_tokens(self, y: torch.Tensor) -> torch.Tensor:
        if self.inverse is not None:
            return y.index_select(0, self.inverse)
        out = y.new_zeros(self.num_tokens, y.size(1))
        return out.index_add_(0, self.sorted_token, y)


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plan):
        ctx.plan = plan
        return plan._to_sorted(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return ctx.plan._to_tokens(grad.contiguous()), None


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, plan):
        ctx.plan = plan
        return plan._to_tokens(y)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return ctx.plan._to_sorted(grad.contiguous()), None


class _GroupedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, plan):
        ctx.plan = plan
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        out = x.new_empty(x.size(0), weight.size(2))
        for e, start, end in plan.slices:
            if bias is None:
                torch.mm(x[start:end], weight[e], out=out[start:end])
            else:
                torch.addmm(bias[e], x[start:end], weight[e], out=out[start:end])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        grad_x = torch.empty_like(x) if need_x else None
        # Every slice is written by an mm; only experts without tokens need zeroing
        # (zero-filling the whole [E, in, out] costs as much as a small matmul).
        grad_w = torch.empty_like(weight) if need_w else None
        grad_b = grad.new_empty(weight.size(0), weight.size(2)) if need_b else None
        empty = ctx.plan.empty_experts
        if empty and need_w:
            grad_w[empty] = 0.0
        if empty and need_b:
            grad_b[empty] = 0.0
        for e, start, end in ctx.plan.slices:
            g = grad[start:end]
            if need_x:
                torch.mm(g, weight[e].t(), out=grad_x[start:end])
            if need_w:
                torch.mm(x[start:end].t(), g, out=grad_w[e])
            if need_b:
                torch.sum(g, 0, out=grad_b[e])
        return grad_x, grad_w, grad_b if ctx.has_bias else None, None


class _GroupedMMLinear(torch.autograd.Function):
    """:class:`_GroupedLinear` through ``torch.nn.functional.grouped_mm``: one kernel
    for all experts, forward and both gradients (the weight gradient is the 2-D x 2-D
    grouped product ``x^T @ grad`` split at the same offsets)."""

    @staticmethod
    def forward(ctx, x, weight, bias, plan):
        ctx.plan = plan
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        out = torch.nn.functional.grouped_mm(x, weight, offs=plan.group_ends())
        if bias is not None:  # grouped_mm has no per-group bias (torch 2.11)
            out = out + bias.index_select(0, plan.row_expert())
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        plan = ctx.plan
        grad = grad.contiguous()
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        offs = plan.group_ends()
        grad_x = grad_w = grad_b = None
        try:
            if need_x:
                grad_x = torch.nn.functional.grouped_mm(grad, weight.transpose(1, 2), offs=offs)
            if need_w:
                grad_w = torch.nn.functional.grouped_mm(x.t(), grad, offs=offs)
        except RuntimeError as e:  # a kernel this GPU / build lacks: the loop from now on
            _grouped_mm_failed(e)
            return _GroupedLinear.backward(ctx, grad)
        if need_w and plan.empty_experts:  # pytorch/pytorch#172439: not always zero
            grad_w[plan.empty_experts] = 0.0
        if need_b:
            grad_b = torch.zeros(
                weight.size(0), weight.size(2), dtype=torch.float32, device=grad.device
            )
            grad_b = grad_b.index_add_(0, plan.row_expert(), grad.float()).to(grad.dtype)
        return grad_x, grad_w, grad_b if ctx.has_bias else None, None


# "auto": the grouped GEMM where grouped_mm_applies() says so, the loop elsewhere;
# "loop": always the loop; "grouped_mm": the grouped GEMM whenever torch has it
# (also on the CPU, through PyTorch's reference kernel: how the tests exercise it).
GROUPED_MM_MODES = ("auto", "loop", "grouped_mm")
_grouped_mm_mode = os.environ.get("ESPNET_PLUGINS_GROUPED_MM", "auto")
if _grouped_mm_mode not in GROUPED_MM_MODES:
    raise ValueError(
        f"ESPNET_PLUGINS_GROUPED_MM={_grouped_mm_mode!r}: must be one of {GROUPED_MM_MODES}"
    )
_capability = {}


def set_grouped_mm(mode: str) -> str:
    """Select the expert matmul (``auto``, ``loop`` or ``grouped_mm``); returns the
    previous mode. The environment variable ``ESPNET_PLUGINS_GROUPED_MM`` sets the
    initial one."""
    global _grouped_mm_mode
    if mode not in GROUPED_MM_MODES:
        raise ValueError(f"grouped_mm mode must be one of {GROUPED_MM_MODES}, got {mode!r}")
    if mode == "grouped_mm" and not hasattr(torch.nn.functional, "grouped_mm"):
        raise RuntimeError(
            f"torch {torch.__version__} has no torch.nn.functional.grouped_mm; "
            "use mode auto or loop"
        )
    previous, _grouped_mm_mode = _grouped_mm_mode, mode
    return previous


@contextlib.contextmanager
def grouped_mm_mode(mode: str):
    """``with grouped_mm_mode("loop"): ...``: :func:`set_grouped_mm` for a block."""
    previous = set_grouped_mm(mode)
    try:
        yield
    finally:
        set_grouped_mm(previous)


def grouped_mm_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether PyTorch's grouped GEMM kernel takes these operands: CUDA, both bf16,
    compute capability >= 8.0, and rows 16-byte aligned (in/out sizes multiples of 8),
    which the kernel requires of its operand strides."""
    if not hasattr(torch.nn.functional, "grouped_mm") or not x.is_cuda:
        return False
    if x.dtype != torch.bfloat16 or weight.dtype != torch.bfloat16:
        return False
    if weight.size(1) % 8 or weight.size(2) % 8:
        return False
    index = x.device.index if x.device.index is not None else torch.cuda.current_device()
    if index not in _capability:
        _capability[index] = torch.cuda.get_device_capability(index)
    return _capability[index] >= (8, 0)


def _use_grouped_mm(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if _grouped_mm_mode == "loop":
        return False
    if _grouped_mm_mode == "grouped_mm":
        return True
    return grouped_mm_applies(x, weight)


def _grouped_mm_failed(error: RuntimeError) -> None:
    global _grouped_mm_mode
    if _grouped_mm_mode == "grouped_mm":  # forced: the caller wants to know
        raise error
    _grouped_mm_mode = "loop"
    logging.warning(
        f"torch.nn.functional.grouped_mm failed ({error}); expert matmuls use the "
        "per-expert loop for the rest of this process (ESPNET_PLUGINS_GROUPED_MM=loop "
        "chooses it from the start)"
    )


def _apply(x, weight, bias, plan):
    if _use_grouped_mm(x, weight):
        try:
            return _GroupedMMLinear.apply(x, weight, bias, plan)
        except RuntimeError as e:
            _grouped_mm_failed(e)
    return _GroupedLinear.apply(x, weight, bias, plan)


def grouped_linear(
    x_sorted: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    plan: DispatchPlan,
) -> torch.Tensor:
    """Per-expert affine map of an expert-sorted buffer.

    Args:
        x_sorted: [M, in] rows in the plan's sorted order (from
            :meth:`DispatchPlan.gather` or from a previous expert layer).
        weight: [E, in, out] stacked expert weights.
        bias: [E, out] or None.
        plan: the dispatch plan that sorted ``x_sorted``.

    Returns:
        [M, out], row r computed with the weights of the expert that owns row r.

    The matmul is one ``grouped_mm`` kernel where :func:`grouped_mm_applies` (on
    CUDA under bf16 autocast), a loop of ``addmm`` over the experts otherwise;
    :func:`set_grouped_mm` overrides the choice.
    """
    return plan.linear(x_sorted, weight, bias)


def dense_oracle_expert_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    expert_index: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Reference top-1 expert linear: every expert on every token, then select.

    Test oracle only (E times the compute of :func:`grouped_linear`).

    Args:
        x: [*token_shape, in].
        weight: [E, in, out]; bias: [E, out] or None.
        expert_index: LongTensor of shape ``token_shape``.
        valid: optional BoolTensor of shape ``token_shape``; invalid tokens give zeros.

    Returns:
        [*token_shape, out].
    """
    every = torch.einsum("...i,eio->...eo", x, weight)
    if bias is not None:
        every = every + bias
    index = expert_index.unsqueeze(-1).unsqueeze(-1).expand(
        *expert_index.shape, 1, weight.size(2)
    )
    out = every.gather(-2, index).squeeze(-2)
    if valid is not None:
        out = out * valid.unsqueeze(-1).to(out.dtype)
    return out


def route_fractions(plan: DispatchPlan) -> torch.Tensor:
    """Fraction of the routed rows each expert received, [E] (no host sync)."""
    # num_rows: an int, or a 0-d tensor in a traced plan
    return plan.counts.to(torch.float32) / torch.as_tensor(plan.num_rows).clamp(min=1)

