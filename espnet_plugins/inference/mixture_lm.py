"""Linear mixture of word n-gram LMs, weighted per utterance (e.g. by the router's posteriors).

p(w | h) = sum_l weight_l * p_l(w | h_l): each KenLM model keeps its own state, so the mixture
is exact for n-grams, unlike pyctcdecode's ``MultiLanguageModel`` (a plain mean of log-scores).
"""
import math
from typing import List, Sequence, Tuple

import kenlm
from pyctcdecode.constants import AVG_TOKEN_LEN
from pyctcdecode.language_model import AbstractLanguageModel

LN10 = math.log(10.0)


def _logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


class MixtureLM(AbstractLanguageModel):
    """Args:
        models: KenLM models, one per language.
        unigrams: each model's word set (a word outside it gets ``unk_score_offset``).
        tries: each model's ``pygtrie.CharTrie`` of its words (partial-word scoring).
        weights: mixture weights (summing to 1; zero-weight models are dropped).
        alpha / beta / unk_score_offset: as pyctcdecode's ``LanguageModel`` (log10 offset).
    """

    def __init__(self, models: Sequence["kenlm.Model"], unigrams: Sequence[set], tries: Sequence,
                 weights: Sequence[float], alpha: float = 0.5, beta: float = 1.0,
                 unk_score_offset: float = -10.0):
        if not (len(models) == len(unigrams) == len(tries) == len(weights)) or not models:
            raise ValueError("MixtureLM needs one unigram set, trie and weight per model")
        keep = [i for i, w in enumerate(weights) if w > 0]
        if not keep:
            raise ValueError(f"MixtureLM: no positive weight in {list(weights)}")
        total = sum(weights[i] for i in keep)
        self._models = [models[i] for i in keep]
        self._unigrams = [unigrams[i] for i in keep]
        self._tries = [tries[i] for i in keep]
        self._log_weights = [math.log(weights[i] / total) for i in keep]
        self.alpha, self.beta, self.unk_score_offset = alpha, beta, unk_score_offset

    @property
    def order(self) -> int:
        return max(m.order for m in self._models)

    def get_start_state(self) -> List["kenlm.State"]:
        states = []
        for m in self._models:
            s = kenlm.State()
            m.BeginSentenceWrite(s)
            states.append(s)
        return states

    def score_partial_token(self, partial_token: str) -> float:
        """ln of the expected unknown-word penalty: 0 if every model knows the prefix."""
        terms = [lw + (0.0 if trie.has_node(partial_token) else self.unk_score_offset * LN10)
                 for lw, trie in zip(self._log_weights, self._tries)]
        score = _logsumexp(terms) / LN10  # back to log10 units, like pyctcdecode's offset
        if len(partial_token) > AVG_TOKEN_LEN:
            score *= len(partial_token) / AVG_TOKEN_LEN
        return score

    def score(self, prev_state: List["kenlm.State"], word: str,
              is_last_word: bool = False) -> Tuple[float, List["kenlm.State"]]:
        terms, end_states = [], []
        for lw, m, vocab, state in zip(self._log_weights, self._models, self._unigrams, prev_state):
            end = kenlm.State()
            log10p = m.BaseScore(state, word, end)
            if word not in vocab:
                log10p += self.unk_score_offset
            if is_last_word:
                log10p += m.BaseScore(end, "</s>", kenlm.State())
            terms.append(lw + log10p * LN10)
            end_states.append(end)
        return self.alpha * _logsumexp(terms) + self.beta, end_states
