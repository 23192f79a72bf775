"""Python API: transcribe audio with a trained model, optionally under a language prior.

>>> s2t = Speech2Text("exp/asr/config.yaml", "exp/asr/valid.loss.ave.pth")
>>> s2t = Speech2Text.from_pretrained("exp/asr/packed.zip")  # or its unpacked dir, or a hub repo id
>>> s2t.set_language_prior(["hi", "mr"])           # expert pruning (hard) ...
>>> s2t.set_language_prior(["hi"], mode="soft")     # ... or a soft bias
>>> result = s2t(waveform_16k)                      # -> Result(text=..., lang=...)
"""
import dataclasses
from typing import List, Optional, Sequence, Union

import espnet_plugins  # noqa: F401

import numpy as np
import torch
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter
from espnet2.legacy.nets.pytorch_backend.transformer.subsampling import TooShortUttError

from espnet_plugins.asr.moe_interface import require_language_prior_modules, set_model_language_prior
from espnet_plugins.inference.ctc_decoding import ctc_greedy, ctc_prefix_beam_search
from espnet_plugins.tasks.asr import MoEASRTask

DECODING_METHODS = ("ctc_greedy", "ctc_prefix_beam")


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


class Speech2Text:
    """Loads ``config.yaml`` + checkpoint through :class:`MoEASRTask` and decodes with CTC.

    Args:
        decoding: ``ctc_greedy`` (batched arg-max) or ``ctc_prefix_beam``.
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
    ):
        if decoding not in DECODING_METHODS:
            raise ValueError(f"decoding must be one of {DECODING_METHODS}, got {decoding!r}")
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
            finally:
                if hasattr(self.model, "pop_aux"):
                    self.model.pop_aux()

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

    def check_language_prior_applies(self) -> None:
        """Raise ``ValueError`` if this model has nothing a language prior acts on
        (for callers that set per-utterance priors later, e.g. ``--allowed_langs oracle``)."""
        require_language_prior_modules(self.model)

    @torch.no_grad()
    def batch(self, speech: torch.Tensor, lengths: torch.Tensor) -> List[Result]:
        """Decode a padded batch: speech [B, S] float, lengths [B].

        Utterances shorter than :attr:`min_samples` (too short for the STFT and the
        subsampling) get an empty result; the rest are decoded normally.
        """
        long_enough = (lengths >= self.min_samples).tolist()
        if not all(long_enough):
            keep = [i for i, k in enumerate(long_enough) if k]
            decoded = iter(self.batch(speech[keep, : int(lengths[keep].max())], lengths[keep]) if keep else [])
            return [next(decoded) if k else Result("", [], []) for k in long_enough]
        speech, lengths = speech.to(self.device), lengths.to(self.device)
        enc, enc_lens = self.model.encode(speech, lengths)
        if isinstance(enc, tuple):
            enc = enc[0]
        aux = self.model.pop_aux() if hasattr(self.model, "pop_aux") else {}
        log_probs = self.model.ctc.log_softmax(enc)
        if self.decoding == "ctc_greedy":
            hyps = ctc_greedy(log_probs, enc_lens)
        else:
            hyps = [ctc_prefix_beam_search(lp[:n], self.beam_size)[0][0] for lp, n in zip(log_probs, enc_lens)]
        langs, posts = self._utterance_langs(aux, len(hyps))
        route = self._route_fractions(aux, len(hyps))
        gate = getattr(self.model.preencoder, "last_gate", None)
        results = []
        for i, ids in enumerate(hyps):
            tokens = self.converter.ids2tokens(ids)
            text = self.tokenizer.tokens2text(tokens) if self.tokenizer is not None else "".join(tokens)
            results.append(Result(text, tokens, ids, langs[i], posts[i], route[i],
                                  gate[i].tolist() if gate is not None else None))
        return results

    @staticmethod
    def _route_fractions(aux, batch_size: int):
        if "expert_index" not in aux:
            return [None] * batch_size
        index, lengths = aux["expert_index"], aux["lid_lengths"]
        # lid_logits may be absent (a model saved during its dense warm-up, router idle)
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
        logits, lengths = aux["lid_logits"], aux["lid_lengths"]
        valid = (torch.arange(logits.size(1), device=logits.device)[None, :] < lengths[:, None]).float()
        mean_logp = (logits.log_softmax(-1) * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        post = mean_logp.softmax(-1)
        return [self.langs[i] for i in post.argmax(-1).tolist()], post.tolist()
