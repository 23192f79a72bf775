"""The convergence benchmark's plateau-exit rule (bench/bench_convergence.py)."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench_convergence", Path(__file__).resolve().parents[1] / "bench" / "bench_convergence.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _exit(ratios, **kw):
    points = [(19 * (i + 1), r) for i, r in enumerate(ratios)]
    return bench.summarise(points, {}, 0.5, 1, 0.1, points[-1][0], **kw)["plateau_exit_iter"]


def test_exit_is_start_of_a_held_run_in_range():
    # noise at init, plateau, rise: the exit is the first interval of 3 in [0.5, 2]
    assert _exit([0.7, 0.0, 0.0, 0.2, 0.55, 0.7, 0.8, 0.9]) == 19 * 5


def test_one_interval_burst_on_the_plateau_is_not_an_exit():
    # the seed-1 burst seen with warmup 150: 0.00, 4.8, 0.003 -> not an exit
    assert _exit([0.6, 0.0, 4.816, 0.003, 0.2, 0.6, 0.7, 0.9]) == 19 * 6
    # a dip back onto the plateau restarts the hold
    assert _exit([0.6, 0.0, 0.6, 0.7, 0.05, 0.6, 0.7, 0.8]) == 19 * 6


def test_initial_noise_and_never_leaving():
    assert _exit([0.8, 0.9, 0.7]) is None            # never entered the plateau
    assert _exit([0.8, 0.0, 0.0, 0.3, 0.6, 0.7]) is None  # too few intervals to hold
    assert _exit([0.8, 0.0, 0.6, 0.7], exit_hold=2) == 19 * 3


def test_stop_after_exit_stops_the_training_and_marks_the_row(tmp_path, monkeypatch):
    """A fake run.sh logs one interval per 0.2 s and would run for a minute: the probe
    must stop it once the exit is established and report the exit, not an error."""
    recipe = tmp_path / "recipe"
    (recipe / "exp").mkdir(parents=True)
    ratios = [0.6, 0.0, 0.0, 0.3, 0.6, 0.7, 0.8] + [0.9] * 300
    lines = "\n".join(f"[vm] 1epoch:train:{19 * i + 1}-{19 * (i + 1)}batch: loss=1.0, ctc_emission={r}"
                      for i, r in enumerate(ratios))
    (recipe / "lines.txt").write_text(lines + "\n")
    script = recipe / "run.sh"
    # the tag follows --tag; the exp dir is exp/asr_<tag>
    script.write_text('#!/usr/bin/env bash\necho "$@" > args.txt\nwhile [ "$1" != --tag ]; do shift; done; log=exp/asr_$2/train.log\n'
                      'while read -r l; do echo "$l" >> "$log"; sleep 0.2; done < lines.txt\n')
    script.chmod(0o755)
    config = tmp_path / "cfg.yaml"
    config.write_text("max_epoch: 1\n")
    monkeypatch.setattr(bench, "RECIPE", recipe)
    monkeypatch.setattr(bench, "TOP", tmp_path)
    args = bench.argparse.Namespace(train_only=True, test_sets=None, expdir="exp", report_only=False,
                                    stop_after_exit=True, exit_ratio=0.5, plateau_ratio=0.1, exit_hold=3,
                                    timeout_s=60, base_exp="exp/asr_base_s{seed}")
    t0 = bench.time.time()
    row = bench.run_one("probe", config, 1, args)
    assert bench.time.time() - t0 < 30           # stopped long before the 60 s the script runs
    assert "error" not in row
    assert row["plateau_exit_iter"] == 19 * 5
    assert "--seed 1 " in (recipe / "args.txt").read_text() and "--base_exp exp/asr_base_s1" in (recipe / "args.txt").read_text()
    assert row["stopped"] == "stopped after the plateau exit, --stop_after_exit"
    state = bench.json.loads((recipe / "exp" / "asr_conv_probe_s1" / "bench_state.json").read_text())
    assert state["stopped_after_exit"] == 19 * 5
    # a rerun does not train again
    n = len((recipe / "exp" / "asr_conv_probe_s1" / "train.log").read_text().splitlines())
    assert n < 60
    assert bench.run_one("probe", config, 1, args)["plateau_exit_iter"] == 19 * 5
    assert len((recipe / "exp" / "asr_conv_probe_s1" / "train.log").read_text().splitlines()) == n


def test_study_table_and_seed_plot(tmp_path):
    """convergence_study.py: one row per seed, mean ± sd per variant, a PNG of every seed."""
    import json

    spec = importlib.util.spec_from_file_location(
        "convergence_study", Path(__file__).resolve().parents[1] / "bench" / "convergence_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    for name, cers in (("a", [5.0, 6.0, 7.0]), ("b", [4.0, 4.0, 4.0])):
        runs = [{"seed": s + 1, "plateau_exit_update": 190, "valid_cer_per_epoch": [9.0, cer - 1], "wall_s": 60.0,
                 "test_cer": {"test_id": cer, "test_ood_band": 2 * cer}} for s, cer in enumerate(cers)]
        (tmp_path / f"{name}.json").write_text(json.dumps({"meta": {"command": f"cmd {name}"}, "runs": runs}))
    out, png = tmp_path / "study.md", tmp_path / "seeds.png"
    assert study.main(["--names", "a", "b", "--dir", str(tmp_path), "--out", str(out), "--plot", str(png)]) == 0
    text = out.read_text()
    assert "| a | 190 / 190 / 190 | 6.0 ± 1.0 |" in text and "| b | 3 | 190 | 9.0 / 3.0 | 4.0 |" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
