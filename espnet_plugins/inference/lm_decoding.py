"""CTC prefix beam search with word n-gram LMs, one per language, chosen per utterance.

The search is pyctcdecode's (KenLM shallow fusion of a word LM over a character or BPE
vocabulary): chosen over torchaudio's flashlight-text ``ctc_decoder`` because flashlight's
word-LM search needs a lexicon, so words outside it (74 % of this corpus's test words) could
not be output at all, and flashlight-text has no Python 3.13 wheel (its sdist downloads
KenLM while building). pyctcdecode keeps out-of-vocabulary words possible, at
``unk_score`` per word, and gives n-best lists and word frame spans.

LMs come from ``local/train_ngram.py`` (a directory with ``lms.yaml``); the caller picks, per
utterance, a language's LM, the pooled one, none, or a mixture (:class:`MixtureLM`) weighted
e.g. by the router's language posteriors.
"""
import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

POOLED = "pooled"


@dataclasses.dataclass
class Hypothesis:
    text: str
    score: float  # acoustic + weighted LM + word bonus (the search's own score)
    lm_score: Optional[float]  # the LM part (None without an LM)
    words: List[Tuple[str, int, int]]  # (word, first frame, end frame), encoder frames


def _labels(token_list: Sequence[str]) -> Tuple[List[str], bool]:
    """ESPnet token list -> pyctcdecode labels: blank '', <space> ' ', <unk> '⁇'."""
    is_bpe = any(t.startswith("▁") for t in token_list)
    special = {"<blank>": "", "<unk>": "▁⁇▁" if is_bpe else "⁇"}
    if not is_bpe:
        special["<space>"] = " "
    labels = [special.get(t, t) for t in token_list]
    if "" not in labels:
        raise ValueError("the token list has no <blank>: not a CTC token list")
    return labels, is_bpe


class CTCBeamDecoder:
    """Args:
        token_list: the model's tokens (``<blank>`` = CTC blank, ``<space>`` = word separator
            for character tokens; sentencepiece ``▁`` pieces for BPE).
        ngram_dir: directory written by ``local/train_ngram.py`` (None: no LM).
        beam_size / nbest: beams kept per frame / hypotheses returned.
        lm_weight / word_score / unk_score: LM weight (alpha), word insertion bonus (beta),
            log10 penalty per out-of-vocabulary word (and partial word).
        beam_prune_logp / token_min_logp: pyctcdecode's pruning (beams this far below the best
            are dropped; tokens below this log-prob are not expanded unless the frame's best).
    """

    def __init__(self, token_list: Sequence[str], ngram_dir: Optional[str] = None, beam_size: int = 10,
                 nbest: int = 1, lm_weight: float = 0.5, word_score: float = 1.0, unk_score: float = -10.0,
                 beam_prune_logp: float = -10.0, token_min_logp: float = -5.0):
        from pyctcdecode.alphabet import Alphabet
        from pyctcdecode.decoder import BeamSearchDecoderCTC

        if nbest > beam_size:
            raise ValueError(f"nbest={nbest} > beam_size={beam_size}: at most beam_size hypotheses exist")
        labels, is_bpe = _labels(token_list)
        self.alphabet = Alphabet(labels, is_bpe)
        self.beam_size, self.nbest = beam_size, nbest
        self.lm_weight, self.word_score, self.unk_score = lm_weight, word_score, unk_score
        self.prune = dict(beam_prune_logp=beam_prune_logp, token_min_logp=token_min_logp)
        self._decoder_cls = BeamSearchDecoderCTC
        self.decoders = {None: BeamSearchDecoderCTC(self.alphabet, None)}
        self.langs: List[str] = []
        self._kenlm: Dict[str, tuple] = {}
        if ngram_dir is not None:
            self._load(Path(ngram_dir))

    def _load(self, ngram_dir: Path) -> None:
        import kenlm
        import yaml
        from pygtrie import CharTrie
        from pyctcdecode.language_model import LanguageModel

        manifest = ngram_dir / "lms.yaml"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} not found: train the LMs first (local/train_ngram.py, "
                                    "run.sh stage 4)")
        info = yaml.safe_load(manifest.read_text(encoding="utf-8"))
        self.langs = list(info["langs"])
        for name, lm in info["lms"].items():
            model = kenlm.Model(str(ngram_dir / lm["lm"]))
            words = set((ngram_dir / lm["unigrams"]).read_text(encoding="utf-8").split())
            self._kenlm[name] = (model, words, CharTrie.fromkeys(words))
            lang_model = LanguageModel(model, words, alpha=self.lm_weight, beta=self.word_score,
                                       unk_score_offset=self.unk_score)
            self.decoders[name] = self._decoder_cls(self.alphabet, lang_model)

    def reset_params(self, lm_weight: float, word_score: float, unk_score: float) -> None:
        """New LM weight / word bonus / OOV penalty for every LM (e.g. a grid search)."""
        self.lm_weight, self.word_score, self.unk_score = float(lm_weight), float(word_score), float(unk_score)
        for decoder in self.decoders.values():
            decoder.reset_params(alpha=self.lm_weight, beta=self.word_score, unk_score_offset=self.unk_score)

    @property
    def lm_names(self) -> List[str]:
        return [k for k in self.decoders if k is not None]

    def decode(self, log_probs: Union[np.ndarray, "torch.Tensor"],  # noqa: F821
               lm: Union[None, str, Dict[str, float]] = None) -> List[Hypothesis]:
        """n-best for one utterance. log_probs: [T, V] (valid frames only).

        lm: None (no LM), an LM name (a language or ``pooled``), or {language: weight} for a
        linear mixture of those languages' LMs.
        """
        if hasattr(log_probs, "detach"):
            log_probs = log_probs.detach().float().cpu().numpy()
        log_probs = np.asarray(log_probs, dtype=np.float32)
        owned = False  # a mixture decoder made for this call, cleaned up after it
        if isinstance(lm, dict):
            decoder, owned = self._mixture_decoder(lm)
        else:
            if lm not in self.decoders:
                raise ValueError(f"no LM {lm!r}: have {self.lm_names or 'none (no ngram_dir given)'}")
            decoder = self.decoders[lm]
        if log_probs.shape[0] == 0:
            if owned:
                decoder.cleanup()
            return [Hypothesis("", 0.0, None, [])]
        try:
            beams = decoder.decode_beams(log_probs, beam_width=self.beam_size, **self.prune)
        finally:
            if owned:
                decoder.cleanup()  # pyctcdecode keeps each decoder's LM in a class-level registry
        return [Hypothesis(text, float(score), None if lm is None else float(score - logit), list(
            (w, int(s), int(e)) for w, (s, e) in frames)) for text, _, frames, logit, score in beams[: self.nbest]]

    def _mixture_decoder(self, weights: Dict[str, float]):
        from espnet_plugins.inference.mixture_lm import MixtureLM

        unknown = sorted(set(weights) - set(self.langs))
        if unknown:
            raise ValueError(f"no LM for {unknown}: have {self.langs}")
        names = [k for k, w in weights.items() if w > 0]
        if len(names) == 1:
            return self.decoders[names[0]], False
        models, words, tries = zip(*(self._kenlm[k] for k in names))
        mixture = MixtureLM(models, words, tries, [weights[k] for k in names], alpha=self.lm_weight,
                            beta=self.word_score, unk_score_offset=self.unk_score)
        return self._decoder_cls(self.alphabet, mixture), True
