"""bench/bench_rtf.py: models take turns on the same audio; RTF = decode s / audio s."""
import importlib.util
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_rtf", ROOT / "bench" / "bench_rtf.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rtf_is_decode_time_over_audio_time_and_models_take_turns():
    bench = _bench()
    order = []

    def model(label, cost):
        def decode(audio):
            order.append(label)
            time.sleep(cost)
        return decode

    audio = [None] * 4
    rtf = bench.measure({"fast": model("fast", 0.01), "slow": model("slow", 0.03)}, audio, seconds=2.0, rounds=2)
    assert order == ["fast", "slow"] + ["fast"] * 4 + ["slow"] * 4 + ["fast"] * 4 + ["slow"] * 4  # warm-up, 2 rounds
    assert 0.02 <= rtf["fast"] < 0.03 and 0.06 <= rtf["slow"] < 0.08  # 4 x cost / 2 s
    md = bench.markdown({"command": "c", "host": "h", "torch": "t", "threads": 1, "utterances": 4, "audio_seconds": 2.0,
                         "rounds": 2, "data": "d", "exps": {"fast": "a", "slow": "b"}, "rtf": rtf})
    assert "| fast | a | " in md and md.rstrip().split("|")[-2].strip() == f"{rtf['slow'] / rtf['fast']:.2f}"
