"""bench/bench_gpu_presets.py (the GPU cost estimate of docs/gpu_presets.md) on a tiny batch."""
import json
import sys
from pathlib import Path

from _helpers import run

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_presets_tiny(tmp_path):
    out, md = tmp_path / "gpu.json", tmp_path / "gpu.md"
    proc = run([sys.executable, str(ROOT / "bench" / "bench_gpu_presets.py"), "--presets", "train_dense_conformer_gpu",
                "--batch", "1", "--seconds", "1", "--json", str(out), "--out", str(md)],
               capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(out.read_text())["rows"][0]
    assert 15e6 < row["params"] < 30e6 and row["params"] == row["trainable"] and row["use_amp"] is True
    # forward + backward of a 12 x 256 conformer: >1 GFLOP per second of audio; activations are saved
    assert row["flops"] / row["audio_s"] > 1e9 and row["saved_bytes"] > 0 and row["cpu_step_s"] > 0
    assert "| train_dense_conformer_gpu | " in md.read_text()
