"""ESPnet's relative positional encoding computed in the graph instead of a stored table."""
import math
from typing import Tuple

import torch
from espnet2.legacy.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding


class GraphRelPositionalEncoding(torch.nn.Module):
    """Drop-in for ``RelPositionalEncoding`` (``rel_pos_type: latest``) in eval mode.

    ESPnet precomputes a ``[1, 2 * max_len - 1, d]`` sinusoid table and slices it;
    traced, that table becomes a constant of the exported file (5.8 MB for d = 144,
    ``max_len`` 5000) and caps the input length. This module computes the slice
    ``pos_emb[j] = [sin, cos]((T - 1 - j) * div_term)`` for the current length T with
    the same float32 ``div_term``, so the graph carries ``d / 2`` numbers instead.

    Args:
        source: the module it replaces (its size, scale and dropout are reused).
    """

    def __init__(self, source: RelPositionalEncoding):
        super().__init__()
        self.d_model = source.d_model
        self.xscale = source.xscale
        self.dropout = source.dropout
        div_term = torch.exp(
            torch.arange(0, self.d_model, 2, dtype=torch.float32)
            * -(math.log(10000.0) / self.d_model)
        )
        self.register_buffer("div_term", div_term)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, d] -> (x * sqrt(d), pos_emb [1, 2T - 1, d])."""
        length = x.size(1)
        position = torch.arange(length - 1, -length, -1, device=x.device).to(torch.float32)
        angle = position.unsqueeze(1) * self.div_term  # [2T - 1, d / 2]
        pos_emb = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(1)
        return self.dropout(x * self.xscale), self.dropout(pos_emb.unsqueeze(0).to(x.dtype))


def replace_rel_positional_encodings(module: torch.nn.Module) -> int:
    """Swap every ``RelPositionalEncoding`` inside ``module`` in place; returns how many."""
    replaced = 0
    for name, child in list(module.named_children()):
        if type(child) is RelPositionalEncoding:
            setattr(module, name, GraphRelPositionalEncoding(child))
            replaced += 1
        else:
            replaced += replace_rel_positional_encodings(child)
    return replaced
