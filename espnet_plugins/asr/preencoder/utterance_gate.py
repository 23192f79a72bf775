"""Utterance-level gate of the SMEAR-MoE projector."""
from typing import Optional

import torch
from typeguard import typechecked


class UtteranceGate(torch.nn.Module):
    """Per-frame softmax over experts, averaged over each utterance's valid frames.

    ``ḡ_b = (1 / L_b) Σ_{t < L_b} softmax(gate(x_bt))``. The SMEAR-MoE authors' code
    averages over padded frames too, which makes an utterance's routing depend on the
    longest utterance of its batch; here padded frames are excluded, so ḡ is the same
    whether the utterance is alone or in a padded batch.

    Args:
        input_size: Feature dimension of the frames.
        num_experts: Number of experts ``M`` (softmax width).
        gate_type: ``linear`` (one projection) or ``mlp`` (Linear -> ReLU -> Linear).
        hidden_size: Hidden width of the ``mlp`` gate.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        num_experts: int,
        gate_type: str = "linear",
        hidden_size: int = 256,
    ):
        super().__init__()
        if gate_type == "linear":
            self.net = torch.nn.Linear(input_size, num_experts)
        elif gate_type == "mlp":
            self.net = torch.nn.Sequential(
                torch.nn.Linear(input_size, hidden_size),
                torch.nn.ReLU(),
                torch.nn.Linear(hidden_size, num_experts),
            )
        else:
            raise ValueError(f"gate_type must be 'linear' or 'mlp', got {gate_type!r}")

    def forward(
        self,
        xs: torch.Tensor,
        ilens: torch.Tensor,
        logit_bias: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Return ḡ [B, M] for frames ``xs`` [B, T, D] with lengths ``ilens`` [B].

        ``logit_bias`` [B, M], if given, is added to every frame's gate logits (the
        projector's optional language/family conditioning).
        """
        logits = self.net(xs)
        if logit_bias is not None:
            logits = logits + logit_bias.unsqueeze(1)
        probs = torch.softmax(logits, dim=-1)  # [B, T, M]
        frames = torch.arange(xs.size(1), device=xs.device)
        valid = (frames < ilens.unsqueeze(1)).to(probs.dtype)  # [B, T]
        # Masked mean as one batched matvec: [B, 1, T] @ [B, T, M].
        summed = torch.bmm(valid.unsqueeze(1), probs).squeeze(1)
        return summed / ilens.to(probs.dtype).unsqueeze(1)
