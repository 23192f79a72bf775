"""Greedy CTC and the utterance language, for torch tensors and numpy arrays alike.

One implementation serves training statistics, :class:`Speech2Text`, ONNX export
checks and the torch-free ONNX decoder (so this module imports no torch). ESPnet's
``asr_inference`` runs its beam search even at beam 1, several times slower than an
arg-max; the prefix beam search with n-gram LMs is in :mod:`lm_decoding`.
"""
from typing import List

import numpy as np


def _frames(x):
    """0..T-1 along dim 1 of a [B, T, ...] tensor or array, shaped [1, T]."""
    if isinstance(x, np.ndarray):
        return np.arange(x.shape[1])[None, :]
    import torch

    return torch.arange(x.shape[1], device=x.device)[None, :]


def ctc_greedy_mask(best, lengths, blank: int = 0):
    """Frames whose arg-max token ``best`` [B, T] survives CTC collapse: a token
    other than blank and than the previous frame's, inside the length [B]."""
    keep = best != blank
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    return keep & (_frames(best) < lengths[:, None])


def ctc_greedy(log_probs, lengths, blank: int = 0) -> List[List[int]]:
    """Arg-max per frame, merge repeats, drop blanks: log_probs [B, T, V] -> ids."""
    best = log_probs.argmax(-1)
    keep = ctc_greedy_mask(best, lengths, blank)
    return [row[mask].tolist() for row, mask in zip(best, keep)]


def utterance_log_posterior(logits, lengths):
    """Language log-posteriors averaged over each utterance's valid frames.

    logits [B, T, L] (router logits), lengths [B] -> [B, L]. Its arg-max is the
    utterance's language: what decoding reports and what utterance routing picks.
    """
    valid = (_frames(logits) < lengths[:, None])[..., None]
    if isinstance(logits, np.ndarray):
        logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        total = np.where(valid, logp, 0.0).sum(1)
        return total / np.maximum(valid.sum(1), 1)
    logp = logits.log_softmax(-1).masked_fill(~valid, 0.0)
    return logp.sum(1) / valid.sum(1).clamp(min=1)
