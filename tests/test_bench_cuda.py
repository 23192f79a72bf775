"""The CUDA check script (bench/bench_cuda.py) on the CPU. Its dry run (``--device cpu``)
compares the CPU with itself, which only shows the script runs; what the tests check is
that each comparison can fail: a perturbed copy standing in for the CUDA model fails the
agreement check, a NaN weight fails the training-step check."""
import copy
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_cuda", ROOT / "bench" / "bench_cuda.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _workdir(tmp_path):
    (tmp_path / "tokens.txt").write_text("\n".join(bench.TOKENS) + "\n", encoding="utf-8")
    (tmp_path / "langs").write_text("\n".join(bench.LANGS) + "\n", encoding="utf-8")
    return tmp_path


def test_checks_pass_on_a_healthy_model_and_fail_on_a_perturbed_copy_or_a_nan_weight(tmp_path, monkeypatch):
    model, args = bench.build(ROOT / "conf" / "train_mini_smear_blr_moe.yaml", _workdir(tmp_path))
    b = bench.make_batch(2, 1.0, 0, "cpu")
    assert int(b["speech_lengths"][-1]) == 12800 and int((b["text"][-1] == -1).sum()) > 0  # padding
    ag = bench.agreement(model, b, 1e-4, "cpu")
    assert ag["ok"] and ag["loss_rel_diff"] == 0.0 and ag["logp_max_abs_diff"] == 0.0
    # The "device" copy computes something else (one weight 1 % off): the check must say so.
    def perturbed_copy(m):
        other = copy.deepcopy(m)
        with torch.no_grad():
            other.ctc.ctc_lo.weight.mul_(1.01)
        return other

    monkeypatch.setattr(bench, "copy", types.SimpleNamespace(deepcopy=perturbed_copy))
    bad = bench.agreement(model, b, 1e-4, "cpu")
    monkeypatch.undo()
    assert not bad["ok"] and bad["loss_rel_diff"] > 0 and bad["logp_max_abs_diff"] > 100 * 1e-4, bad
    assert bad["loss_cpu"] == ag["loss_cpu"]
    for bf16 in (False, True):
        step = bench.step_check(model, args, b, bf16)
        assert step["ok"] and step["finite_grads"] and step["params_changed"] > 0, step

    with torch.no_grad():
        next(model.encoder.parameters()).fill_(float("nan"))
    step = bench.step_check(model, args, b, False)
    assert not step["ok"] and not step["finite_grads"]


def test_dry_run_writes_a_table_of_the_presets(tmp_path):
    out = tmp_path / "bench_cuda"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_cuda.py"), "--device", "cpu",
                          "--presets", "mini", "frozen_monolithic", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["all_ok"] is True and sorted(result["checks"]) == ["frozen_monolithic", "mini"]
    table = out.with_suffix(".md").read_text()
    assert "| mini |" in table and "| frozen_monolithic |" in table and "FAIL" not in table
