"""Decode with an exported ONNX model: ONNX Runtime + numpy, no torch, no ESPnet.

    python -m espnet_plugins.inference.onnx_decode --model exp/asr/model.onnx \\
        --wav_scp dump/raw/test_id/wav.scp --output exp/asr/decode_onnx/test_id/text

The graph (``python -m espnet_plugins.bin.export``) takes 16 kHz waveforms and
returns CTC log-probabilities, so decoding is greedy CTC in numpy
(:func:`~espnet_plugins.inference.ctc_decoding.ctc_greedy`, on numpy arrays) and the
token list written beside the model (``tokens.txt``). Text is the tokens joined,
with ``<space>`` (char tokens) or ``▁`` (sentencepiece) as word separators, which is
what ESPnet's tokenizers give for these token types. Audio is read with
``soundfile`` (or the standard library's ``wave`` for 16-bit PCM when soundfile is
missing); ``wav.scp`` lines ending in ``|`` are run as commands that write wav to
stdout. Inputs shorter than the model's ``min_samples`` (too short for the STFT
and the subsampling) decode to an empty line, as :class:`Speech2Text` does.
"""
import argparse
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_plugins.inference.ctc_decoding import ctc_greedy, utterance_log_posterior


def tokens_to_text(tokens: Sequence[str], token_type: str) -> str:
    """Join tokens as ESPnet's char / sentencepiece tokenizers do."""
    if token_type == "char":
        return "".join(tokens).replace("<space>", " ")
    if token_type in ("bpe", "unigram", "sentencepiece"):
        return "".join(tokens).replace("\u2581", " ").strip()
    return " ".join(tokens)  # word tokens


class OnnxSpeech2Text:
    """An exported model and its token list, decoding batches of waveforms.

    Args:
        model: path of the ``.onnx`` file.
        token_list: ``tokens.txt`` (default: beside the model).
        num_threads: ONNX Runtime intra-op threads.
    """

    def __init__(self, model: str, token_list: Optional[str] = None, num_threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        required = ("sample_rate", "min_samples", "token_type", "blank_id", "langs", "router_langs")
        missing = [key for key in required if key not in meta]
        if missing:
            raise ValueError(
                f"{model}: metadata {missing} missing; export it with python -m espnet_plugins.bin.export"
            )
        self.sample_rate = int(meta["sample_rate"])
        self.min_samples = int(meta["min_samples"])
        self.token_type = meta["token_type"]
        self.blank_id = int(meta["blank_id"])
        self.router_langs = json.loads(meta["router_langs"])
        token_list = Path(token_list) if token_list else Path(model).parent / "tokens.txt"
        if not token_list.is_file():
            raise FileNotFoundError(f"token list {token_list} not found; pass --token_list")
        self.tokens = token_list.read_text(encoding="utf-8").split("\n")[:-1]
        vocab = self.session.get_outputs()[0].shape[-1]
        if isinstance(vocab, int) and vocab != len(self.tokens):
            raise ValueError(f"{token_list} has {len(self.tokens)} tokens, the model outputs {vocab}")

    def batch(self, waves: Sequence[np.ndarray]) -> List[Dict]:
        """Decode 1-D float32 waveforms (any lengths) as one zero-padded batch.

        Returns per utterance ``{"text", "token_ids", "lang"}`` (``lang``: arg-max of
        the router's mean log-posterior over frames, None without a router).
        """
        lengths = np.array([len(w) for w in waves], dtype=np.int64)
        ok = lengths >= self.min_samples
        results = [{"text": "", "token_ids": [], "lang": None} for _ in waves]
        if not ok.any():
            return results
        index = np.flatnonzero(ok)
        speech = np.zeros((len(index), int(lengths[index].max())), dtype=np.float32)
        for row, i in enumerate(index):
            speech[row, : lengths[i]] = waves[i]
        outputs = self.session.run(None, {"speech": speech, "speech_lengths": lengths[index]})
        log_probs, out_lengths = outputs[0], outputs[1]
        hyps = ctc_greedy(log_probs, out_lengths, self.blank_id)
        langs = None
        if len(outputs) > 2 and self.router_langs:
            langs = utterance_log_posterior(outputs[2], out_lengths).argmax(-1)
        for row, (i, ids) in enumerate(zip(index, hyps)):
            text = tokens_to_text([self.tokens[t] for t in ids], self.token_type)
            results[i] = {"text": text, "token_ids": ids, "lang": None}
            if langs is not None:
                results[i]["lang"] = self.router_langs[int(langs[row])]
        return results

    def __call__(self, wave: np.ndarray) -> Dict:
        return self.batch([wave])[0]


def read_wav_scp(path: str) -> List[Tuple[str, str]]:
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected '<utt-id> <wav path or command |>'")
            entries.append((parts[0], parts[1]))
    return entries


def load_audio(spec: str, sample_rate: int) -> np.ndarray:
    """Mono float32 in [-1, 1] from a path or a ``command |`` wav.scp entry."""
    if spec.rstrip().endswith("|"):
        data = subprocess.run(spec.rstrip()[:-1], shell=True, check=True, capture_output=True).stdout
        source = io.BytesIO(data)
    else:
        source = spec
    try:
        import soundfile

        wave, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except ImportError:
        import wave as wavefile

        with wavefile.open(source, "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{spec}: only 16-bit PCM wav without soundfile installed")
            rate, channels = w.getframerate(), w.getnchannels()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            wave = (pcm.astype(np.float32) / 32768.0).reshape(-1, channels)
    if rate != sample_rate:
        raise ValueError(f"{spec}: {rate} Hz audio, the model wants {sample_rate} Hz (resample it, e.g. with sox)")
    return wave[:, 0]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the exported .onnx file")
    p.add_argument("--wav_scp", required=True)
    p.add_argument("--output", required=True, help="Kaldi text file to write (<utt-id> <hypothesis>)")
    p.add_argument("--token_list", default=None, help="default: tokens.txt beside --model")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--lang_output", default=None, help="also write the router's language per utterance here")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    s2t = OnnxSpeech2Text(args.model, args.token_list, args.num_threads)
    entries = read_wav_scp(args.wav_scp)
    text, langs = [], []
    audio_sec = decode_sec = 0.0
    for start in range(0, len(entries), args.batch_size):
        chunk = entries[start : start + args.batch_size]
        waves = [load_audio(spec, s2t.sample_rate) for _, spec in chunk]
        t0 = time.perf_counter()
        results = s2t.batch(waves)
        decode_sec += time.perf_counter() - t0
        audio_sec += sum(len(w) for w in waves) / s2t.sample_rate
        for (key, _), r in zip(chunk, results):
            text.append(f"{key} {r['text']}".rstrip())
            if r["lang"] is not None:
                langs.append(f"{key} {r['lang']}")
    _write(args.output, text)
    if args.lang_output and langs:
        _write(args.lang_output, langs)
    rtf = decode_sec / audio_sec if audio_sec else float("nan")
    logging.info(f"decoded {len(text)} utterances ({audio_sec:.1f} s of audio) into {args.output}, RTF {rtf:.4f}")


def _write(path: str, lines: List[str]) -> None:
    """Sorted Kaldi lines, written to a temporary file and renamed (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in sorted(lines)), encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    main(sys.argv[1:])
