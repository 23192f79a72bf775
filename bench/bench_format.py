#!/usr/bin/env python3
"""Throughput of the format stage (stage 2): audio hours per wall-clock minute.

Generates a corpus of short clips with numpy + soundfile (a mix of what real corpora
ship: 44.1 kHz stereo wav, 8 kHz wav, 48 kHz flac, 22.05 kHz wav; 0.5-2 s each, all
needing conversion), then formats it with

* today's stage 2: ``local/format_data_dir.py`` as of ``--baseline_rev`` (one sox
  process per file, no jobs), taken from git;
* this stage 2 with ``--nj`` 1, 2, ... (``--jobs``),

in the same run, one after the other, and writes a markdown table. Not part of the
test suite (tests/test_format_stage.py runs it on 40 clips).

    python bench/bench_format.py --num_clips 10000 --jobs 1 2 --out bench/results/format.md
"""
import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "0da6280"  # the last commit with the one-sox-per-file stage 2
KINDS = [("wav", 44100, 2), ("wav", 8000, 1), ("flac", 48000, 1), ("wav", 22050, 1)]  # (ext, rate, channels)


def make_corpus(d: Path, n: int, seed: int) -> float:
    """``n`` clips + a valid data dir in ``d``; returns the hours of audio."""
    rng = np.random.default_rng(seed)
    audio = d / "audio"
    audio.mkdir(parents=True)
    wav, seconds = {}, 0.0
    for i in range(n):
        ext, rate, ch = KINDS[i % len(KINDS)]
        dur = float(rng.uniform(0.5, 2.0))
        t = np.arange(int(dur * rate)) / rate
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.02 * rng.standard_normal(len(t))
        x = np.stack([x, 0.5 * x], axis=1) if ch == 2 else x
        utt = f"spk{i % 100:03d}-{i:06d}"
        path = audio / f"{utt}.{ext}"
        sf.write(path, x.astype(np.float32), rate, subtype="PCM_16")
        wav[utt] = str(path)
        seconds += len(t) / rate
    keys = sorted(wav)
    (d / "wav.scp").write_text("".join(f"{u} {wav[u]}\n" for u in keys))
    (d / "text").write_text("".join(f"{u} a b c\n" for u in keys))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in keys))
    (d / "utt2lang").write_text("".join(f"{u} hi\n" for u in keys))
    spk: dict = {}
    for u in keys:
        spk.setdefault(u.split("-")[0], []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk.items())))
    return seconds / 3600


def baseline_script(rev: str, workdir: Path) -> Path:
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:local/format_data_dir.py"], check=True,
                          capture_output=True, text=True).stdout
    path = workdir / "format_data_dir_baseline.py"
    path.write_text(text)
    return path


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list, log: Path) -> tuple:
    """(wall s, CPU s of the command and its children: the cost that another machine's load does not change)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    t0, c0 = time.perf_counter(), _children_cpu()
    with open(log, "w") as f:
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}; see {log}")
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_clips", type=int, default=10000)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--baseline_rev", default=BASELINE_REV)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_format"))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "format.md")
    p.add_argument("--keep", action="store_true", help="keep the generated corpus and outputs")
    a = p.parse_args()

    shutil.rmtree(a.workdir, ignore_errors=True)
    a.workdir.mkdir(parents=True)
    t0 = time.perf_counter()
    hours = make_corpus(a.workdir / "src", a.num_clips, a.seed)
    gen = time.perf_counter() - t0
    print(f"generated {a.num_clips} clips, {hours:.3f} h, in {gen:.0f} s", flush=True)

    new = ROOT / "local" / "format_data_dir.py"
    runs = [("today's stage 2 (one sox per file)", 1, [sys.executable, str(baseline_script(a.baseline_rev, a.workdir))])]
    runs += [(f"this stage 2, --nj {j}", j, [sys.executable, str(new), "--nj", str(j)]) for j in a.jobs]
    rows = []
    for i, (name, nj, cmd) in enumerate(runs):
        dst = a.workdir / f"out{i}" / "train"
        load = os.getloadavg()[0]
        wall, cpu = timed(cmd + ["--src", str(a.workdir / "src"), "--dst", str(dst)], a.workdir / f"out{i}.log")
        n_out = sum(1 for _ in open(dst / "wav.scp"))
        assert n_out == a.num_clips, (name, n_out)
        rows.append((name, nj, wall, hours, 60 * hours / wall, load, cpu))
        print(f"{name}: {wall:.1f} s, {60 * hours / wall:.3f} h/min, {cpu:.0f} CPU s (load before {load:.1f})",
              flush=True)
        shutil.rmtree(dst.parent)

    base = rows[0][4]
    cmd = "python bench/bench_format.py " + " ".join(
        [f"--num_clips {a.num_clips}", "--jobs " + " ".join(map(str, a.jobs)), f"--seed {a.seed}"])
    lines = [
        "# Format stage throughput (stage 2)",
        "",
        f"Command: `{cmd}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU; shared with "
        f"other jobs (1-min load average before each run in the 'load' column), so wall times are indicative; "
        f"the CPU seconds (user + system of the stage and its sox/ffmpeg children) do not depend on the load.",
        f"Corpus: {a.num_clips} generated clips (seed {a.seed}), 0.5-2 s each, {hours:.2f} h in all: a quarter each "
        f"of 44.1 kHz stereo wav, 8 kHz wav, 48 kHz flac, 22.05 kHz wav (every one needs converting to 16 kHz mono; "
        f"generated in {gen:.0f} s). Output: 16 kHz mono 16-bit wav.",
        f"Baseline: `local/format_data_dir.py` at commit {a.baseline_rev} (one `sox` process per file, one job).",
        "",
        "| method | jobs | wall (s) | audio (h) | audio h / wall min | speed-up | load | CPU (s) | ms CPU / clip |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, nj, wall, h, rate, load, cpu in rows:
        lines.append(f"| {name} | {nj} | {wall:.2f} | {h:.4f} | {rate:.3f} | {rate / base:.2f} | {load:.1f} | "
                     f"{cpu:.1f} | {1000 * cpu / a.num_clips:.1f} |")
    lines.append("")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))
    if not a.keep:
        shutil.rmtree(a.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
