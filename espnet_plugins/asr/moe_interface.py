"""What MoE modules (encoder / preencoder) return besides ESPnet's outputs, and the
language prior they accept.

ESPnet fixes ``AbsEncoder.forward`` to ``(out, olens, states)`` and
``AbsPreEncoder.forward`` to ``(out, olens)``. Our modules keep that ``forward`` (stock
ESPnet code can run them) and add ``forward_with_aux``, which returns the same plus an
aux dict; ``forward`` wraps it and drops the dict. Keys a module may return:

``lid_logits``  Tensor [B, T, L]  language-router logits (pre-softmax), one row per frame
``lid_lengths`` Tensor [B]        valid frames per row of ``lid_logits``
``expert_index`` Tensor [B, T]    expert chosen per frame, for analysis
``gate``        Tensor [B, M]     SMEAR utterance gate ḡ (detached), for analysis
``load_balance`` scalar Tensor    load-balancing loss, weighted by the model
any other key    scalar Tensor    reported in ESPnet ``stats`` (detached)
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch

# Aux keys that are tensors for analysis, not statistics.
ANALYSIS_KEYS = ("lid_logits", "lid_lengths", "expert_index", "gate")


def merge_aux(parts: Sequence[Tuple[str, Dict[str, torch.Tensor]]]) -> Dict[str, torch.Tensor]:
    """Merge ``(module name, aux)`` dicts: ``load_balance`` terms add up, other
    colliding keys get the module's name as a prefix."""
    merged: Dict[str, torch.Tensor] = {}
    for name, aux in parts:
        for key, value in aux.items():
            if key in merged and key == "load_balance":
                merged[key] = merged[key] + value
            else:
                merged[key if key not in merged else f"{name}_{key}"] = value
    return merged


class LanguagePriorMixin:
    """Mixin for modules whose routing can be restricted to a set of languages.

    ``allowed`` holds language indices (positions in the model's ``langs``); ``None``
    removes the prior. ``mode='hard'`` masks router logits outside the set before the
    arg-max (expert pruning); ``mode='soft'`` adds ``log(soft_floor)`` to the logits of
    languages outside the set, so a wrong prior degrades gracefully.
    """

    def set_language_prior(
        self,
        allowed: Optional[Sequence[int]],
        mode: str = "hard",
        soft_floor: float = 0.1,
    ) -> None:
        raise NotImplementedError

    def applies_language_prior(self) -> bool:
        """False when this instance has nothing a prior acts on (e.g. a SMEAR gate
        without language conditioning); :func:`set_model_language_prior` skips it."""
        return True


def language_prior_modules(model: torch.nn.Module) -> List[Tuple[str, LanguagePriorMixin]]:
    """``(name, module)`` of every submodule of ``model`` that a language prior acts on.

    Searches all submodules, so a router inside a wrapped model (``frontend:
    frozen_encoder`` around a trained BLR-MoE) is found as well.
    """
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, LanguagePriorMixin) and m.applies_language_prior()
    ]


def require_language_prior_modules(
    model: torch.nn.Module, what: str = "a language prior"
) -> List[Tuple[str, LanguagePriorMixin]]:
    """:func:`language_prior_modules`, or ``ValueError`` saying why there are none."""
    targets = language_prior_modules(model)
    if not targets:
        parts = ", ".join(
            f"{slot} {type(getattr(model, slot)).__name__}"
            for slot in ("frontend", "preencoder", "encoder")
            if getattr(model, slot, None) is not None
        )
        raise ValueError(
            f"{what} was given, but this model ({parts or type(model).__name__}) has nothing "
            "it acts on, so it would be ignored: a prior needs a language router (encoder: "
            "blr_moe, also inside frontend: frozen_encoder) or a language-conditioned projector "
            "gate (preencoder: smear_moe with gate_conditioning: language or family); decode "
            "this model without --allowed_langs"
        )
    return targets


def set_model_language_prior(
    model: torch.nn.Module,
    allowed_langs: Optional[Sequence[str]],
    langs: Optional[Sequence[str]],
    mode: str = "hard",
    soft_floor: float = 0.1,
) -> None:
    """Restrict every router / conditioned gate of ``model`` to ``allowed_langs``.

    Names are mapped to each module's own language list (``module.langs``, else
    ``langs``), so a frozen base model whose lang list differs from the outer
    model's gets the right indices; a module that knows none of the allowed
    languages is left without a prior (with a warning). ``None`` removes the prior.

    Args:
        model: the ASR model (any ESPnet model).
        allowed_langs: language names, or None.
        langs: the model's language list (``--lang_list``); None: the union of the
            modules' lists.
        mode, soft_floor: see :class:`LanguagePriorMixin`.

    Raises:
        ValueError: a prior was given but nothing in ``model`` would apply it (the
            prior would be silently ignored), or it names a language the model does
            not know.
    """
    if mode not in ("hard", "soft"):
        raise ValueError(f"prior mode must be 'hard' or 'soft', got {mode!r}")
    if allowed_langs is None:
        for _, m in language_prior_modules(model):
            m.set_language_prior(None, mode=mode, soft_floor=soft_floor)
        return
    targets = require_language_prior_modules(model, f"a language prior ({list(allowed_langs)})")
    if langs is None:
        langs = list(dict.fromkeys(x for _, m in targets for x in (getattr(m, "langs", None) or [])))
    unknown = [x for x in allowed_langs if x not in langs]
    if unknown or not allowed_langs:
        raise ValueError(f"allowed_langs {list(allowed_langs)}: unknown {unknown}; the model knows {list(langs)}")
    for name, m in targets:
        own = list(getattr(m, "langs", None) or langs)
        ids = [own.index(x) for x in allowed_langs if x in own]
        if len(ids) < len(allowed_langs):
            missing = [x for x in allowed_langs if x not in own]
            logging.warning(
                f"language prior {list(allowed_langs)}: {name} ({type(m).__name__}) does not know {missing} "
                f"(its languages: {own}); "
                + (f"its prior is {[own[i] for i in ids]}" if ids else "it gets no prior")
            )
        m.set_language_prior(ids or None, mode=mode, soft_floor=soft_floor)
