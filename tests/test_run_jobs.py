"""The recipe's local job launcher (local/run_jobs.sh, linked from each recipe)."""
import os
import subprocess
from pathlib import Path

from _helpers import skip_or_fail

LAUNCHER = Path(__file__).resolve().parents[1] / "local" / "run_jobs.sh"


def test_job_array_runs_in_parallel_under_omp_num_threads_1(tmp_path):
    """run.sh launches its decoding and stats jobs with OMP_NUM_THREADS=1, which `nproc`
    honours: the launcher must still run as many jobs at once as there are cores."""
    if len(os.sched_getaffinity(0)) < 2:
        skip_or_fail("needs 2 cores to run 2 jobs at once (the CI machine has 2)")
    job = "echo start $(date +%s.%N); sleep 1.5; echo end $(date +%s.%N)"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([str(LAUNCHER), "JOB=1:2", str(tmp_path / "log.JOB"), "sh", "-c", job],
                   env=env, check=True, timeout=60)
    times = []
    for j in (1, 2):
        fields = dict(line.split() for line in (tmp_path / f"log.{j}").read_text().splitlines()
                      if line.startswith(("start", "end")))
        times.append((float(fields["start"]), float(fields["end"])))
    (s1, e1), (s2, e2) = times
    assert s2 < e1 and s1 < e2, f"jobs ran one after the other: {times}"


def test_failed_job_is_named(tmp_path):
    res = subprocess.run([str(LAUNCHER), "JOB=1:2", str(tmp_path / "log.JOB"), "sh", "-c", "exit $((JOB - 1))"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and str(tmp_path / "log.2") in res.stderr and str(tmp_path / "log.1") not in res.stderr
