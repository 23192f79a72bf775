"""Router augmentation: train the language router(s) alone, the rest frozen in eval mode."""
from typing import List, Tuple

import torch


def freeze_all_but_router(model: torch.nn.Module) -> None:
    """Leave only the parameters of ``model.router_parameters()`` trainable."""
    router = {id(p) for p in (model.router_parameters() if hasattr(model, "router_parameters") else [])}
    if not router:
        raise ValueError(
            "--train_router_only needs a model with a language router "
            "(e.g. encoder: blr_moe); this model has none"
        )
    for p in model.parameters():
        p.requires_grad_(id(p) in router)


def trainable_modules(model: torch.nn.Module) -> List[Tuple[str, torch.nn.Module]]:
    """The outermost submodules whose parameters all train (the routers)."""
    kept: List[Tuple[str, torch.nn.Module]] = []
    for name, module in model.named_modules():
        params = list(module.parameters())
        inside_kept = any(name.startswith(k + ".") for k, _ in kept)
        if params and not inside_kept and all(p.requires_grad for p in params):
            kept.append((name, module))
    return kept


def router_only_train_mode(model: torch.nn.Module) -> None:
    """Training mode for router augmentation: frozen modules in eval (the paper's "ASR
    frozen": no dropout, no BatchNorm statistics update), while the model itself (read by
    the SpecAugment switch and the non-finite guard), SpecAugment and the routers train."""
    kept = trainable_modules(model)
    model.train(False)
    model.training = True
    if getattr(model, "specaug", None) is not None:
        model.specaug.train(True)
    for _, module in kept:
        module.train(True)
