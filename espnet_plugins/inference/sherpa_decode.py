"""Decode a wav.scp with sherpa-onnx and a model from ``bin/export.py --format sherpa_onnx``.

    python -m espnet_plugins.inference.sherpa_decode --model_dir exp/asr/sherpa_onnx \\
        --wav_scp dump/raw/test_id/wav.scp --output exp/asr/decode_sherpa/test_id/text

sherpa-onnx's own ``OfflineRecognizer`` (greedy CTC, its C++ runtime) does the work; this
script only reads the wav.scp (as :mod:`onnx_decode` does), writes Kaldi text and logs
the real-time factor.
"""
import argparse
import logging
import sys
import time
from pathlib import Path
from typing import List

import numpy as np

from espnet_plugins.inference.onnx_decode import _write, load_audio, read_wav_scp


class SherpaSpeech2Text:
    """sherpa-onnx's recognizer for ``model_dir`` (``model.onnx`` + ``tokens.txt``).

    Args:
        model_dir: the export's directory.
        num_threads: sherpa-onnx's (ONNX Runtime's) intra-op threads.
    """

    def __init__(self, model_dir: str, num_threads: int = 1):
        import sherpa_onnx

        model_dir = Path(model_dir)
        for name in ("model.onnx", "tokens.txt"):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(f"{model_dir / name} not found; export with bin/export.py --format sherpa_onnx")
        self.sample_rate = 16000
        self.recognizer = sherpa_onnx.OfflineRecognizer.from_omnilingual_asr_ctc(
            model=str(model_dir / "model.onnx"), tokens=str(model_dir / "tokens.txt"), num_threads=num_threads)

    def batch(self, waves: List[np.ndarray]) -> List[str]:
        streams = []
        for wave in waves:
            stream = self.recognizer.create_stream()
            stream.accept_waveform(self.sample_rate, np.ascontiguousarray(wave, dtype=np.float32))
            streams.append(stream)
        self.recognizer.decode_streams(streams)
        return [s.result.text.strip() for s in streams]

    def __call__(self, wave: np.ndarray) -> str:
        return self.batch([wave])[0]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="directory with model.onnx + tokens.txt")
    p.add_argument("--wav_scp", required=True)
    p.add_argument("--output", required=True, help="Kaldi text file to write (<utt-id> <hypothesis>)")
    p.add_argument("--num_threads", type=int, default=1)
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    s2t = SherpaSpeech2Text(args.model_dir, args.num_threads)
    text, audio_sec, decode_sec = [], 0.0, 0.0
    for key, spec in read_wav_scp(args.wav_scp):
        wave = load_audio(spec, s2t.sample_rate)
        t0 = time.perf_counter()
        hyp = s2t(wave)
        decode_sec += time.perf_counter() - t0
        audio_sec += len(wave) / s2t.sample_rate
        text.append(f"{key} {hyp}".rstrip())
    _write(args.output, text)
    rtf = decode_sec / audio_sec if audio_sec else float("nan")
    logging.info(f"decoded {len(text)} utterances ({audio_sec:.1f} s of audio) into {args.output}, RTF {rtf:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
