import math
import itertools

import torch

from espnet_plugins.inference.ctc_decoding import ctc_greedy, ctc_prefix_beam_search


def _onehot_logp(seq, vocab):
    lp = torch.full((len(seq), vocab), -20.0)
    lp[torch.arange(len(seq)), torch.tensor(seq)] = 0.0
    return lp.log_softmax(-1)


def test_greedy_merges_repeats_drops_blanks_and_respects_lengths():
    lp = torch.stack([_onehot_logp([1, 1, 0, 1, 2, 2, 0, 3], 5), _onehot_logp([2, 0, 2, 2, 4, 4, 4, 4], 5)])
    assert ctc_greedy(lp, torch.tensor([8, 4])) == [[1, 1, 2, 3], [2, 2]]


def _brute_force_prefix_probs(lp):
    """Sum over every alignment of its collapsed label sequence (exact, tiny T and V)."""
    T, V = lp.shape
    probs = {}
    for path in itertools.product(range(V), repeat=T):
        collapsed = tuple(k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k))
        probs[collapsed] = probs.get(collapsed, 0.0) + math.exp(sum(lp[t, k].item() for t, k in enumerate(path)))
    return probs


def test_prefix_beam_search_matches_exhaustive_sum_over_alignments():
    torch.manual_seed(0)
    lp = torch.randn(5, 3).log_softmax(-1)
    exact = _brute_force_prefix_probs(lp)
    nbest = ctc_prefix_beam_search(lp, beam_size=100, token_prune=3)
    best_exact = max(exact, key=exact.get)
    assert tuple(nbest[0][0]) == best_exact
    for tokens, logp in nbest:
        assert math.isclose(math.exp(logp), exact[tuple(tokens)], rel_tol=1e-4)


def test_prefix_beam_can_beat_greedy():
    # Greedy picks blank at every frame; the summed probability of "1" is higher.
    lp = torch.tensor([[0.4, 0.35, 0.25], [0.4, 0.35, 0.25]]).log()
    assert ctc_greedy(lp[None], torch.tensor([2])) == [[]]
    assert ctc_prefix_beam_search(lp, beam_size=4)[0][0] == [1]
