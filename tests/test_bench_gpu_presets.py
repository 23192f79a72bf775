"""bench/bench_gpu_presets.py (the GPU cost estimate of docs/gpu_presets.md) on a tiny batch, in process."""
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu_presets", ROOT / "bench" / "bench_gpu_presets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_presets_tiny(tmp_path, monkeypatch):
    bench = _bench()
    row = bench.measure("train_dense_conformer_gpu", 1, 1.0)
    assert 15e6 < row["params"] < 30e6 and row["params"] == row["trainable"] and row["use_amp"] is True
    # forward + backward of a 12 x 256 conformer: >1 GFLOP per second of audio; activations are saved
    assert row["flops"] / row["audio_s"] > 1e9 and row["saved_bytes"] > 0 and row["cpu_step_s"] > 0
    (tmp_path / "rows.json").write_text(json.dumps({"rows": [row]}))
    monkeypatch.setattr(sys, "argv", ["bench_gpu_presets.py", "--from_json", str(tmp_path / "rows.json"),
                                      "--out", str(tmp_path / "table.md")])
    bench.main()
    line = next(x for x in (tmp_path / "table.md").read_text().splitlines() if x.startswith("| train_dense"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    per_s = row["flops"] / row["audio_s"]
    assert float(cells[4]) == round(per_s / 1e9, 1)
    assert float(cells[6]) == round(per_s * 360000 / (0.01 * 989e12) / 3600, 2)  # H100 at 1 % MFU, h per 100 h
