"""Position-wise feed-forward layer with one expert per language (FFN-MoE)."""
import torch

from espnet_plugins.asr.moe.dispatch import DispatchPlan
from espnet_plugins.asr.moe.expert_linear import ExpertLinear


class MoEFeedForward(torch.nn.Module):
    """Expert version of ESPnet's ``PositionwiseFeedForward``.

    Same computation and parameter names (``w_1``, ``w_2``) as the dense layer, with
    expert-stacked weights: ``w_2(dropout(activation(w_1(x))))`` where every token uses
    the expert the dispatch plan assigned to it. Tokens are gathered once, stay in
    expert-sorted order through both linears, and are scattered back once.

    Args:
        num_experts: number of experts E.
        idim: input/output size.
        hidden_units: hidden size of each expert.
        dropout_rate: dropout between the two linears.
        activation: activation module.
        replicate_init: every expert starts from the same weights (ExpertLinear).
    """

    def __init__(
        self,
        num_experts: int,
        idim: int,
        hidden_units: int,
        dropout_rate: float,
        activation: torch.nn.Module = torch.nn.ReLU(),
        replicate_init: bool = False,
    ):
        super().__init__()
        self.w_1 = ExpertLinear(
            num_experts, idim, hidden_units, replicate_init=replicate_init
        )
        self.w_2 = ExpertLinear(
            num_experts, hidden_units, idim, replicate_init=replicate_init
        )
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.activation = activation

    def forward(self, x: torch.Tensor, plan: DispatchPlan) -> torch.Tensor:
        """Apply each token's expert FFN.

        Args:
            x: [B, T, idim] with ``plan.token_shape == (B, T)``.
            plan: the batch's dispatch plan.

        Returns:
            [B, T, idim]; tokens the plan left out (padding) are zeros.
        """
        h = self.w_1(plan.gather(x), plan)
        h = self.w_2(self.dropout(self.activation(h)), plan)
        return plan.scatter(h)
