"""Python API: transcribe audio with a trained model, optionally under a language prior.

>>> s2t = Speech2Text("exp/asr/config.yaml", "exp/asr/valid.loss.ave.pth")
>>> s2t = Speech2Text.from_pretrained("exp/asr/packed.zip")  # or its unpacked dir, or a hub repo id
>>> s2t.set_language_prior(["hi", "mr"])           # expert pruning (hard) ...
>>> s2t.set_language_prior(["hi"], mode="soft")     # ... or a soft bias
>>> result = s2t(waveform_16k)                      # -> Result(text=..., lang=...)
"""
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple, Union

import espnet_plugins  # noqa: F401

import numpy as np
import torch
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter
from espnet2.legacy.nets.pytorch_backend.transformer.subsampling import TooShortUttError

from espnet_plugins.asr.moe_interface import require_language_prior_modules, set_model_language_prior
from espnet_plugins.inference.ctc_decoding import ctc_greedy, utterance_log_posterior
from espnet_plugins.tasks.asr import MoEASRTask

DECODING_METHODS = ("ctc_greedy", "ctc_prefix_beam")
# which n-gram LM decodes an utterance (ctc_prefix_beam): see Speech2Text's lm_mode
LM_MODES = ("none", "routed", "mixed", "oracle", "pooled")


@dataclasses.dataclass
class Result:
    text: str
    tokens: List[str]
    token_ids: List[int]
    lang: Optional[str] = None  # router's utterance-level language, if the model has one
    lang_posterior: Optional[List[float]] = None
    # share of frames routed to each language expert (BLR-MoE) / SMEAR gate ḡ, if any
    route_frac: Optional[List[float]] = None
    smear_gate: Optional[List[float]] = None
    # ctc_prefix_beam: n-best (text, score), words (word, start s, end s), the LM used
    nbest: Optional[List[Tuple[str, float]]] = None
    words: Optional[List[Tuple[str, float, float]]] = None
    lm: Optional[str] = None


class Speech2Text:
    """Loads ``config.yaml`` + checkpoint through :class:`MoEASRTask` and decodes with CTC.

    Args:
        decoding: ``ctc_greedy`` (batched arg-max) or ``ctc_prefix_beam`` (pyctcdecode,
            :class:`~espnet_plugins.inference.lm_decoding.CTCBeamDecoder`).
        ngram_dir / lm_mode: word n-gram LMs (``local/train_ngram.py``) and which one decodes
            each utterance: ``none``; ``routed`` (the router's utterance language, within
            ``allowed_langs`` if set); ``mixed`` (every language's LM, mixed by the router's
            posteriors); ``oracle`` (the languages :meth:`batch` is given per utterance);
            ``pooled`` (one LM of all languages); or a language code (that LM for all).
        nbest / lm_weight / word_score / unk_score: see ``CTCBeamDecoder``.
        allowed_langs / prior_mode / soft_floor: language prior, see
            :meth:`set_language_prior`.
    """

    def __init__(
        self,
        asr_train_config: str,
        asr_model_file: Optional[str] = None,
        device: str = "cpu",
        decoding: str = "ctc_greedy",
        beam_size: int = 8,
        allowed_langs: Optional[Sequence[str]] = None,
        prior_mode: str = "hard",
        soft_floor: float = 0.1,
        ngram_dir: Optional[str] = None,
        lm_mode: str = "none",
        nbest: int = 1,
        lm_weight: float = 0.5,
        word_score: float = 1.0,
        unk_score: float = -10.0,
    ):
        if decoding not in DECODING_METHODS:
            raise ValueError(f"decoding must be one of {DECODING_METHODS}, got {decoding!r}")
        if lm_mode != "none" and (decoding != "ctc_prefix_beam" or ngram_dir is None):
            raise ValueError(f"lm_mode={lm_mode!r} needs decoding=ctc_prefix_beam and an ngram_dir "
                             "(local/train_ngram.py's output)")
        model, args = MoEASRTask.build_model_from_file(asr_train_config, asr_model_file, device)
        self.model = model.eval()
        self.device = device
        self.decoding = decoding
        self.beam_size = beam_size
        self.langs: Optional[List[str]] = getattr(model, "langs", None) or getattr(args, "lang_list", None)
        self.converter = TokenIDConverter(token_list=model.token_list)
        self.tokenizer = build_tokenizer(token_type=args.token_type, bpemodel=args.bpemodel)
        self.set_language_prior(allowed_langs, prior_mode, soft_floor)
        self.min_samples = self._shortest_decodable_input()
        self.lm_mode = lm_mode
        self.beam_decoder = None
        if decoding == "ctc_prefix_beam":
            from espnet_plugins.inference.lm_decoding import CTCBeamDecoder

            self.beam_decoder = CTCBeamDecoder(model.token_list, ngram_dir, beam_size, nbest, lm_weight,
                                               word_score, unk_score)
            known = list(LM_MODES) + self.beam_decoder.langs
            if lm_mode not in known:
                raise ValueError(f"lm_mode must be one of {known}, got {lm_mode!r}")
            missing = sorted(set(self.langs or []) - set(self.beam_decoder.langs))
            if lm_mode in ("routed", "mixed") and missing:
                raise ValueError(f"lm_mode={lm_mode}: no LM in {ngram_dir} for the model's languages {missing}")

    @torch.no_grad()
    def _shortest_decodable_input(self) -> int:
        """Fewest samples the frontend (STFT padding) and the subsampling accept.

        Found once by bisection on silence, so that shorter inputs (an empty file, a
        click) get an empty result instead of an exception from deep inside the model.
        """

        def ok(n: int) -> bool:
            try:
                self.model.encode(torch.zeros(1, n, device=self.device), torch.tensor([n], device=self.device))
                return True
            except (TooShortUttError, RuntimeError):
                return False

        hi = 64
        while not ok(hi):
            hi *= 2
            if hi > 1 << 22:
                raise RuntimeError("the model cannot encode even 4 M samples of silence; check the config")
        lo = hi // 2  # ok(lo) is False or lo is below every tested size
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid, hi)
        return hi

    def set_language_prior(
        self, allowed_langs: Optional[Sequence[str]], mode: str = "hard", soft_floor: float = 0.1
    ) -> None:
        """Restrict routing to ``allowed_langs`` (``None`` = no prior).

        ``hard`` masks router logits outside the set (expert pruning); ``soft`` only
        biases them by ``log(soft_floor)``, so a wrong prior degrades gracefully. The
        prior reaches every router and language-conditioned gate of the model,
        including those of a frozen base model used as the frontend. A model with
        neither (a dense or SMEAR-only model) raises ``ValueError`` rather than
        decoding as if there were no prior.
        """
        set_model_language_prior(self.model, allowed_langs, self.langs, mode, soft_floor)
        self.allowed_langs = list(allowed_langs) if allowed_langs else None  # also limits lm_mode=routed

    def check_language_prior_applies(self) -> None:
        """Raise ``ValueError`` if this model has nothing a language prior acts on
        (for callers that set per-utterance priors later, e.g. ``--allowed_langs oracle``)."""
        require_language_prior_modules(self.model)

    @torch.no_grad()
    def batch(self, speech: torch.Tensor, lengths: torch.Tensor,
              lm_langs: Optional[Sequence[Sequence[str]]] = None) -> List[Result]:
        """Decode a padded batch: speech [B, S] float, lengths [B]; ``lm_langs``: each
        utterance's language(s) for ``lm_mode="oracle"``.

        Utterances shorter than :attr:`min_samples` (too short for the STFT and the
        subsampling) get an empty result; the rest are decoded normally.
        """
        long_enough = (lengths >= self.min_samples).tolist()
        if not all(long_enough):
            keep = [i for i, k in enumerate(long_enough) if k]
            sub_langs = [lm_langs[i] for i in keep] if lm_langs is not None else None
            decoded = iter(self.batch(speech[keep, : int(lengths[keep].max())], lengths[keep], sub_langs)
                           if keep else [])
            return [next(decoded) if k else Result("", [], []) for k in long_enough]
        speech, lengths = speech.to(self.device), lengths.to(self.device)
        if hasattr(self.model, "encode_with_aux"):
            enc, enc_lens, aux = self.model.encode_with_aux(speech, lengths)
        else:  # a stock ESPnet model
            (enc, enc_lens), aux = self.model.encode(speech, lengths), {}
        if isinstance(enc, tuple):
            enc = enc[0]
        log_probs = self.model.ctc.log_softmax(enc)
        langs, posts = self._utterance_langs(aux, len(log_probs))
        beams = [None] * len(log_probs)
        if self.decoding == "ctc_greedy":
            hyps = ctc_greedy(log_probs, enc_lens)
        else:
            lms = [self._lm_for(posts[i], lm_langs[i] if lm_langs is not None else None)
                   for i in range(len(log_probs))]
            beams = [(lm, self.beam_decoder.decode(lp[:n], lm)) for lp, n, lm in zip(log_probs, enc_lens, lms)]
            split = self.tokenizer.text2tokens if self.tokenizer is not None else list
            hyps = [self.converter.tokens2ids(split(nb[0].text)) for _, nb in beams]
        route = self._route_fractions(aux, len(hyps))
        gate = aux.get("gate")
        results = []
        for i, ids in enumerate(hyps):
            tokens = self.converter.ids2tokens(ids)
            text = self.tokenizer.tokens2text(tokens) if self.tokenizer is not None else "".join(tokens)
            result = Result(text, tokens, ids, langs[i], posts[i], route[i],
                            gate[i].tolist() if gate is not None else None)
            if beams[i] is not None:  # frame spans -> seconds (encoder frames evenly cover the input)
                lm, nbest = beams[i]
                sec = float(lengths[i]) / 16000 / max(int(enc_lens[i]), 1)
                result.text = nbest[0].text
                result.nbest = [(h.text, h.score) for h in nbest]
                result.words = [(w, round(s * sec, 3), round(e * sec, 3)) for w, s, e in nbest[0].words]
                result.lm = lm if not isinstance(lm, dict) else "+".join(f"{k}:{v:.2f}" for k, v in lm.items())
            results.append(result)
        return results

    def _lm_for(self, post: Optional[List[float]], ref_langs: Optional[Sequence[str]]):
        """The LM for one utterance (see ``lm_mode``): None, an LM name, or mixture weights."""
        mode = self.lm_mode
        if mode == "none":
            return None
        if mode == "pooled" or mode in self.beam_decoder.langs:
            return mode
        if mode == "oracle":
            if not ref_langs:
                raise ValueError("lm_mode=oracle needs each utterance's language(s): batch(..., lm_langs=...)")
            langs = sorted(set(ref_langs))
            return langs[0] if len(langs) == 1 else {lang: 1.0 / len(langs) for lang in langs}
        allowed = self.allowed_langs or self.langs
        if post is None:  # no router: a single allowed language still names the LM
            if self.allowed_langs and len(self.allowed_langs) == 1:
                return self.allowed_langs[0]
            raise ValueError(f"lm_mode={mode} needs the router's language, and this model has no router: "
                             "use lm_mode=pooled, lm_mode=<language>, or one --allowed_langs language")
        weights = {lang: p for lang, p in zip(self.langs, post) if lang in allowed}
        if mode == "routed":
            return max(weights, key=weights.get)
        weights = {lang: p for lang, p in weights.items() if p >= 0.01}  # each LM costs a query per word
        total = sum(weights.values())
        return {lang: p / total for lang, p in weights.items()}

    @staticmethod
    def _route_fractions(aux, batch_size: int):
        if "expert_index" not in aux:
            return [None] * batch_size
        index, lengths = aux["expert_index"], aux["lid_lengths"]
        num_experts = sum(1 for key in aux if key.startswith("route_frac_"))
        valid = torch.arange(index.size(1), device=index.device)[None, :] < lengths[:, None]
        counts = torch.nn.functional.one_hot(index, num_experts).mul(valid[..., None]).sum(1).float()
        return (counts / lengths[:, None].clamp(min=1)).tolist()

    def __call__(self, speech: Union[np.ndarray, torch.Tensor]) -> Result:
        speech = torch.as_tensor(speech, dtype=torch.float32)
        return self.batch(speech[None], torch.tensor([speech.shape[-1]]))[0]

    @classmethod
    def from_pretrained(cls, model_tag: str, **kwargs) -> "Speech2Text":
        """Load a packed zip (``run.sh`` stage 11), its unpacked directory, or a Hugging
        Face repo id (``owner/name[@revision]``, through ``huggingface_hub``'s cache and
        the user's ``HF_*`` settings); ``kwargs`` go to the constructor.
        See :mod:`espnet_plugins.deploy.pretrained`."""
        import tempfile

        from espnet_plugins.deploy.pretrained import resolve_model

        with tempfile.TemporaryDirectory(prefix="espnet_plugins_cfg_") as workdir:
            config, model_file = resolve_model(model_tag, workdir)
            return cls(str(config), str(model_file), **kwargs)

    def _utterance_langs(self, aux, batch_size: int):
        """Utterance language = arg-max of the router's mean log-posterior over valid frames."""
        if "lid_logits" not in aux or not self.langs:
            return [None] * batch_size, [None] * batch_size
        post = utterance_log_posterior(aux["lid_logits"], aux["lid_lengths"]).softmax(-1)
        return [self.langs[i] for i in post.argmax(-1).tolist()], post.tolist()
