"""The contract between MoE modules (encoder / preencoder) and :class:`MoEASRModel`.

ESPnet's ``AbsEncoder.forward`` returns ``(out, olens, states)`` only, so auxiliary
outputs travel through a side channel: after each ``forward`` a module that mixes in
:class:`AuxOutputMixin` stores a dict that the model collects with :meth:`pop_aux`.
Keeping this out of the return value lets every module still satisfy the stock ESPnet
contract (and be used by stock ESPnet code that knows nothing about MoE).

Keys a module may put in its aux dict (all optional):

``lid_logits``  Tensor [B, T, L]  language-router logits (pre-softmax), one row per frame
``lid_lengths`` Tensor [B]        valid frames per row of ``lid_logits``
``expert_index`` Tensor [B, T]    expert chosen per frame (valid up to ``lid_lengths``), for analysis
``load_balance`` scalar Tensor    load-balancing loss (already averaged), weighted by the model
any other key    scalar Tensor    reported in ESPnet ``stats`` as-is (detached), e.g.
                                  ``gate_entropy``, ``gate_mean_e0``
"""
from typing import Dict, Optional, Sequence

import torch


class AuxOutputMixin:
    """Mixin for modules that report auxiliary losses / statistics after forward."""

    _aux: Optional[Dict[str, torch.Tensor]] = None

    def _set_aux(self, aux: Dict[str, torch.Tensor]) -> None:
        self._aux = aux

    def pop_aux(self) -> Dict[str, torch.Tensor]:
        """Return the aux dict of the last forward and clear it (empty dict if none)."""
        aux, self._aux = self._aux, None
        return aux or {}


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
