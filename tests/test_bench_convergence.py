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
