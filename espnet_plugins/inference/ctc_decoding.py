"""CTC decoders over encoder log-posteriors: greedy (batched) and prefix beam search.

ESPnet's ``asr_inference`` runs its generic beam search even at beam 1 (RTF 0.063 vs
0.007 for a CTC arg-max on the same encoder output, measured on 2 CPU cores), so pure
CTC models get these light decoders.
"""
import math
from collections import defaultdict
from typing import List, Tuple

import torch


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> List[List[int]]:
    """Arg-max per frame, merge repeats, drop blanks. log_probs: [B, T, V]."""
    best = log_probs.argmax(-1)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank
    keep &= torch.arange(best.size(1), device=best.device)[None, :] < lengths[:, None]
    return [row[mask].tolist() for row, mask in zip(best, keep)]


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def ctc_prefix_beam_search(
    log_probs: torch.Tensor, beam_size: int = 8, blank: int = 0, token_prune: int = 16
) -> List[Tuple[List[int], float]]:
    """Prefix beam search for one utterance. log_probs: [T, V] (valid frames only).

    Keeps, per prefix, the log-probability of ending in blank / non-blank, so repeated
    tokens separated by a blank are handled exactly. Only the ``token_prune`` best
    tokens per frame are expanded. Returns the n-best as (token ids, log-prob).
    """
    beams = {(): (0.0, -math.inf)}  # prefix -> (log p ending in blank, log p ending in non-blank)
    lp = log_probs.float().cpu()
    top_vals, top_ids = lp.topk(min(token_prune, lp.size(-1)), dim=-1)
    for t in range(lp.size(0)):
        nxt = defaultdict(lambda: (-math.inf, -math.inf))
        for prefix, (pb, pnb) in beams.items():
            total = _logaddexp(pb, pnb)
            for v, tok in zip(top_vals[t].tolist(), top_ids[t].tolist()):
                if tok == blank:
                    b, nb = nxt[prefix]
                    nxt[prefix] = (_logaddexp(b, total + v), nb)
                    continue
                new = prefix + (tok,)
                b, nb = nxt[new]
                if prefix and prefix[-1] == tok:
                    # repeat without a blank in between collapses into the same prefix
                    nxt[new] = (b, _logaddexp(nb, pb + v))
                    sb, snb = nxt[prefix]
                    nxt[prefix] = (sb, _logaddexp(snb, pnb + v))
                else:
                    nxt[new] = (b, _logaddexp(nb, total + v))
        scored = [(p, s) for p, s in nxt.items() if _logaddexp(*s) > -math.inf]  # impossible prefixes
        beams = dict(sorted(scored, key=lambda kv: -_logaddexp(*kv[1]))[:beam_size])
    return [(list(p), _logaddexp(*s)) for p, s in beams.items()]
