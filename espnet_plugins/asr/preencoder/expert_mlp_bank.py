"""A bank of M two-layer expert MLPs stored as stacked weights."""
import math

import torch
import torch.nn.functional as F
from typeguard import typechecked

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu, "tanh": torch.tanh}


class ExpertMLPBank(torch.nn.Module):
    """M experts ``Linear -> activation -> dropout -> Linear`` sharing one layout.

    Weights are stacked ``w1 [M, D_in, H]``, ``w2 [M, H, D_out]`` (input-major, so
    ``x @ w`` needs no transpose) and initialised like ``torch.nn.Linear``, also after
    ESPnet's ``init:`` option (its ``espnet_initialization_fn`` hook). The
    variants of :class:`SmearProjector` differ only in how they combine experts:

    - :meth:`forward_merged` (SMEAR): one virtual expert per utterance with
      ``W̄ = Σ_m ḡ_m W_m`` and ``b̄ = Σ_m ḡ_m b_m`` for *both* layers, so the output is
      exactly an MLP with merged parameters (activation included).
    - :meth:`forward_expert`: one expert on all frames (the monolithic MLP when M = 1).
    - :meth:`forward_mean`: every expert on every frame, outputs averaged (M x cost).
    - :meth:`forward_selected`: per utterance, k experts chosen by index, outputs
      weighted; unselected experts get no gradient.

    Args:
        num_experts: Number of experts ``M``.
        input_size: Input feature dimension.
        hidden_size: Hidden width of each expert.
        output_size: Output feature dimension.
        activation: One of ``relu``, ``gelu``, ``swish``, ``tanh``.
        dropout: Dropout rate on the hidden activation.
        zero_output: Initialise the output layer (``w2``, ``b2``) to zero, so the bank
            outputs zero until trained (a residual projector starts as the identity).
    """

    @typechecked
    def __init__(
        self,
        num_experts: int,
        input_size: int,
        hidden_size: int,
        output_size: int,
        activation: str = "relu",
        dropout: float = 0.0,
        zero_output: bool = False,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        self.num_experts = num_experts
        self.zero_output = zero_output
        self.activation = ACTIVATIONS[activation]
        self.dropout = torch.nn.Dropout(dropout)
        self.w1 = torch.nn.Parameter(torch.empty(num_experts, input_size, hidden_size))
        self.b1 = torch.nn.Parameter(torch.empty(num_experts, hidden_size))
        self.w2 = torch.nn.Parameter(torch.empty(num_experts, hidden_size, output_size))
        self.b2 = torch.nn.Parameter(torch.empty(num_experts, output_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Like ``torch.nn.Linear``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) per expert."""
        for weight, bias in ((self.w1, self.b1), (self.w2, self.b2)):
            bound = 1.0 / math.sqrt(weight.size(1))
            torch.nn.init.uniform_(weight, -bound, bound)
            torch.nn.init.uniform_(bias, -bound, bound)
        if self.zero_output:
            torch.nn.init.zeros_(self.w2)
            torch.nn.init.zeros_(self.b2)

    # ESPnet's ``init:`` treats >2-D parameters as conv kernels (wrong fans for stacked
    # [M, in, out] weights) and ignores zero_output; it calls this hook afterwards.
    espnet_initialization_fn = reset_parameters

    def expert_size(self) -> int:
        """Number of parameters of one expert."""
        return sum(p[0].numel() for p in (self.w1, self.b1, self.w2, self.b2))

    def _mlp_batched(
        self,
        x: torch.Tensor,
        w1: torch.Tensor,
        b1: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
    ) -> torch.Tensor:
        """Per-utterance MLP: x [B, T, D_in], w1 [B, D_in, H], b1 [B, H], ... ."""
        # baddbmm fuses the bias into the GEMM instead of a separate pass over [B,T,H].
        h = torch.baddbmm(b1.unsqueeze(1), x, w1)
        h = self.dropout(self.activation(h))
        return torch.baddbmm(b2.unsqueeze(1), h, w2)

    def forward_merged(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """SMEAR: x [B, T, D_in], gate ḡ [B, M] -> [B, T, D_out].

        Each merge is one GEMM ``ḡ @ W.view(M, -1)`` of cost O(B·M·P), independent of
        T, and its backward scatters the merged-weight gradient to every expert with
        weight ḡ_m, so all experts train.
        """
        batch = x.size(0)
        w1 = torch.mm(gate, self.w1.flatten(1)).view(batch, *self.w1.shape[1:])
        w2 = torch.mm(gate, self.w2.flatten(1)).view(batch, *self.w2.shape[1:])
        return self._mlp_batched(x, w1, gate @ self.b1, w2, gate @ self.b2)

    def forward_expert(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Expert ``index`` on every frame: x [B, T, D_in] -> [B, T, D_out]."""
        flat = x.reshape(-1, x.size(-1))  # one large GEMM over all B·T frames
        h = torch.addmm(self.b1[index], flat, self.w1[index])
        h = self.dropout(self.activation(h))
        y = torch.addmm(self.b2[index], h, self.w2[index])
        return y.view(*x.shape[:-1], y.size(-1))

    def forward_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Static equal-weight ensemble: mean over all M experts' outputs."""
        total = self.forward_expert(x, 0)
        for index in range(1, self.num_experts):
            total = total + self.forward_expert(x, index)
        return total / self.num_experts

    def forward_selected(
        self, x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Hard routing: x [B, T, D_in], index/weight [B, k] -> Σ_j w_j · expert_j(x).

        Gathering ``w[index]`` routes gradient only to the selected experts; no
        capacity limit applies because every utterance's experts are gathered for it.
        """
        output = None
        for slot in range(index.size(1)):
            chosen = index[:, slot]
            y = self._mlp_batched(
                x, self.w1[chosen], self.b1[chosen], self.w2[chosen], self.b2[chosen]
            )
            y = y * weight[:, slot, None, None]
            output = y if output is None else output + y
        return output
