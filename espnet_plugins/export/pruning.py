"""Physical expert pruning: keep only some languages' experts and router outputs."""
from typing import Sequence

import torch

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.asr.moe.expert_linear import ExpertLinear


@torch.no_grad()
def prune_language_experts(encoder: BLRMoEEncoder, keep: Sequence[int]) -> None:
    """Cut ``encoder`` (in place) down to the languages with indices ``keep``.

    Every :class:`ExpertLinear` keeps the rows ``keep`` of its stacked ``[E, in,
    out]`` weight and ``[E, out]`` bias, and the router's last linear layer keeps the
    same output rows, so expert ``j`` of the pruned encoder is expert ``keep[j]`` of
    the original. Routing is the arg-max over the kept logits, which is what the
    hard prior (:meth:`BLRMoEEncoder.set_language_prior` with ``mode='hard'``)
    computes on the full model: the pruned encoder gives the same outputs, and the
    removed experts are gone from its state dict.

    Args:
        encoder: a BLR-MoE / LR-MoE encoder without a language prior set.
        keep: language indices (positions in ``encoder.langs``) to keep, any order;
            they are kept in the model's order.
    """
    keep = sorted(set(int(i) for i in keep))
    if not keep or keep[0] < 0 or keep[-1] >= encoder.num_experts:
        raise ValueError(
            f"keep must be language indices in [0, {encoder.num_experts}), got {keep}"
        )
    if encoder.router.prior_bias is not None:
        raise ValueError("remove the language prior (set_language_prior(None)) before pruning")
    index = torch.tensor(keep)
    for module in encoder.modules():
        if isinstance(module, ExpertLinear):
            module.weight = torch.nn.Parameter(module.weight[index].clone())
            if module.bias is not None:
                module.bias = torch.nn.Parameter(module.bias[index].clone())
            module.num_experts = len(keep)
    router = encoder.router
    last = router.output[-1] if isinstance(router.output, torch.nn.Sequential) else router.output
    pruned = torch.nn.Linear(
        last.in_features, len(keep), bias=last.bias is not None,
        device=last.weight.device, dtype=last.weight.dtype,  # a GPU / half-precision model stays so
    )
    pruned.weight.copy_(last.weight[index])
    if last.bias is not None:
        pruned.bias.copy_(last.bias[index])
    if isinstance(router.output, torch.nn.Sequential):
        router.output[-1] = pruned
    else:
        router.output = pruned
    router.num_languages = len(keep)
    encoder.num_experts = len(keep)
    if encoder.langs is not None:
        encoder.langs = [encoder.langs[i] for i in keep]
