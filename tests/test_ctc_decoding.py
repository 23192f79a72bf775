import torch

from espnet_plugins.inference.ctc_decoding import ctc_greedy


def _onehot_logp(seq, vocab):
    lp = torch.full((len(seq), vocab), -20.0)
    lp[torch.arange(len(seq)), torch.tensor(seq)] = 0.0
    return lp.log_softmax(-1)


def test_greedy_merges_repeats_drops_blanks_and_respects_lengths():
    lp = torch.stack([_onehot_logp([1, 1, 0, 1, 2, 2, 0, 3], 5), _onehot_logp([2, 0, 2, 2, 4, 4, 4, 4], 5)])
    assert ctc_greedy(lp, torch.tensor([8, 4])) == [[1, 1, 2, 3], [2, 2]]
