"""Stacked per-expert linear layer operating on a dispatch plan's sorted buffer."""
import math

import torch

from espnet_plugins.asr.moe.dispatch import DispatchPlan, grouped_linear


class ExpertLinear(torch.nn.Module):
    """E independent linear layers stored stacked, applied by expert-sorted rows.

    ``weight`` is ``[E, in, out]`` (already transposed, so each expert's slice is the
    right operand of one ``addmm``) and ``bias`` is ``[E, out]``. Each expert is
    initialised exactly like ``torch.nn.Linear(in, out)``; expert ``e`` corresponds to
    a ``torch.nn.Linear`` with ``weight = self.weight[e].T``, ``bias = self.bias[e]``.

    Args:
        num_experts: number of experts E.
        in_features: input size.
        out_features: output size.
        bias: whether each expert has a bias.
        replicate_init: start every expert from the same random draw (expert 0's),
            so that at step 0 the layer equals one dense ``Linear`` whatever the
            routing; experts then diverge through the tokens routed to them.
    """

    def __init__(
        self,
        num_experts: int,
        in_features: int,
        out_features: int,
        bias: bool = True,
        replicate_init: bool = False,
    ):
        super().__init__()
        self.num_experts = num_experts
        self.replicate_init = replicate_init
        self.in_features = in_features
        self.out_features = out_features
        self.weight = torch.nn.Parameter(
            torch.empty(num_experts, in_features, out_features)
        )
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(num_experts, out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``torch.nn.Linear``'s default init per expert: U(+-1/sqrt(in_features)).

        With ``replicate_init`` expert 0's draw is copied into every expert.
        """
        bound = 1.0 / math.sqrt(self.in_features)
        torch.nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)
        if self.replicate_init:
            with torch.no_grad():
                self.weight.copy_(self.weight[:1].expand_as(self.weight))
                if self.bias is not None:
                    self.bias.copy_(self.bias[:1].expand_as(self.bias))

    # ESPnet's ``init:`` option computes fans of >2-D parameters as if they were conv
    # kernels, which is wrong for a stacked [E, in, out] weight; it calls this hook
    # afterwards, so experts end up initialised per expert.
    espnet_initialization_fn = reset_parameters

    def forward(self, x_sorted: torch.Tensor, plan: DispatchPlan) -> torch.Tensor:
        """Apply each row's expert.

        Args:
            x_sorted: [M, in], rows in ``plan``'s expert-sorted order
                (``plan.gather(x)``, or the output of a previous expert layer).
            plan: the dispatch plan of the current batch.

        Returns:
            [M, out] in the same sorted order (``plan.scatter`` brings it back).
        """
        return grouped_linear(x_sorted, self.weight, self.bias, plan)

    def extra_repr(self) -> str:
        return (
            f"num_experts={self.num_experts}, in_features={self.in_features}, "
            f"out_features={self.out_features}, bias={self.bias is not None}"
        )
