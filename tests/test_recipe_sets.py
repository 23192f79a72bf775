"""Recipe data stages on a hand-made corpus (no synthesis, no training; seconds):
a set that is both the validation set and a test set is filtered for validation only,
and stage 9 says when a scored set is smaller than its data dir."""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from _helpers import run

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "indic_synth" / "asr1"
# utterance -> (seconds, text); "t-short" is below run.sh's --min_dur 0.3
SETS = {
    "trn": {"a-1": (0.5, "क ख"), "a-2": (0.6, "ग घ"), "a-3": (0.5, "क ग")},
    "tst": {"t-1": (0.5, "क ख"), "t-2": (0.6, "ख ग"), "t-short": (0.1, "घ"), "t-4": (0.5, "ग क")},
}


def _write_sets(data: Path) -> None:
    for name, utts in SETS.items():
        d = data / name
        (d / "wav").mkdir(parents=True)
        t = np.arange(16000) / 16000
        for i, (utt, (dur, _)) in enumerate(utts.items()):
            sf.write(d / "wav" / f"{utt}.wav", 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t[: int(dur * 16000)]),
                     16000, subtype="PCM_16")
        files = {"wav.scp": {u: str(d / "wav" / f"{u}.wav") for u in utts}, "text": {u: x for u, (_, x) in utts.items()},
                 "utt2spk": {u: u.split("-")[0] for u in utts}, "utt2lang": {u: "hi" for u in utts}}
        spk = sorted({u.split("-")[0] for u in utts})
        files["spk2utt"] = {s: " ".join(sorted(u for u in utts if u.startswith(s + "-"))) for s in spk}
        for fname, rows in files.items():
            (d / fname).write_text("".join(f"{k} {v}\n" for k, v in sorted(rows.items())), encoding="utf-8")


def _run(tmp: Path, *args: str) -> str:
    cmd = ["./run.sh", "--mini", "true", "--nj", "1", "--datadir", f"{tmp}/data", "--dumpdir", f"{tmp}/dump",
           "--expdir", f"{tmp}/exp", "--train_set", "trn", "--valid_set", "tst", "--test_sets", "tst",
           "--adapt_set", "none", *args]
    res = run(cmd, cwd=RECIPE, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def _ids(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_valid_set_that_is_a_test_set_is_scored_whole(tmp_path):
    _write_sets(tmp_path / "data")
    _run(tmp_path, "--stage", "2", "--stop_stage", "3")
    raw = tmp_path / "dump" / "raw"
    every = sorted(SETS["tst"])
    # the test copy is whole; validation uses a filtered copy of its own
    assert _ids(raw / "tst" / "wav.scp") == every
    assert _ids(raw / "tst_filtered" / "wav.scp") == [u for u in every if u != "t-short"]
    assert _ids(raw / "trn" / "wav.scp") == sorted(SETS["trn"])  # not a test set: its usual place

    # Stage 9 on a (fake) decoding of the whole set: nothing to report.
    exp = tmp_path / "exp" / "asr_mini"
    dec = exp / "decode_ctc_greedy" / "tst"
    dec.mkdir(parents=True)
    (dec / "text").write_text((raw / "tst" / "text").read_text(encoding="utf-8"), encoding="utf-8")
    torch.save({"w": torch.zeros(3)}, exp / "valid.loss.ave.pth")
    log = _run(tmp_path, "--stage", "9", "--stop_stage", "9")
    scores = json.loads((exp / "decode_ctc_greedy" / "scores.json").read_text())["test_sets"]["tst"]
    assert scores["num_utts"] == 4 and scores["unscored_utts"] == 0 and scores["data_dir_utts"] == 4
    assert "not scored whole" not in (tmp_path / "exp" / "RESULTS.md").read_text(encoding="utf-8")
    assert "NOT SCORED WHOLE" not in log

    # A test copy that lacks an utterance of its data dir (a stale dump, an older run.sh
    # that filtered it): stage 9 says so in the log and in RESULTS.md.
    for d in (raw / "tst", dec):
        for f in d.iterdir():
            if f.is_file() and f.name != "spk2utt":
                f.write_text("".join(line + "\n" for line in f.read_text(encoding="utf-8").splitlines()
                                     if not line.startswith("t-short ")), encoding="utf-8")
    log = _run(tmp_path, "--stage", "9", "--stop_stage", "9")
    assert "tst: NOT SCORED WHOLE: 1 of the 4 utterances of" in log
    results = (tmp_path / "exp" / "RESULTS.md").read_text(encoding="utf-8")
    assert f"- **tst not scored whole**: 3 of the 4 utterances of `{tmp_path}/data/tst` (1 not in " in results
    assert "e.g. t-short)" in results
    scores = json.loads((exp / "decode_ctc_greedy" / "scores.json").read_text())["test_sets"]["tst"]
    assert scores["num_utts"] == 3 and scores["unscored_utts"] == 1


def test_filter_rewrites_a_test_copy_that_an_older_run_filtered(tmp_path):
    """dump/raw/<test set> made by the old stage 3 (filtered as the valid set) is made whole."""
    _write_sets(tmp_path / "data")
    _run(tmp_path, "--stage", "2", "--stop_stage", "2")
    raw = tmp_path / "dump" / "raw"
    filt = [sys.executable, "local/filter_data_dir.py", "--src", str(raw / "org" / "tst"), "--dst", str(raw / "tst")]
    res = run(filt, cwd=RECIPE, capture_output=True, text=True, timeout=120)  # as the old run.sh did
    assert res.returncode == 0, res.stderr
    assert "t-short" not in _ids(raw / "tst" / "wav.scp")
    res = run(filt + ["--no_filter"], cwd=RECIPE, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "holds 3 of the 4 utterances" in res.stderr and _ids(raw / "tst" / "wav.scp") == sorted(SETS["tst"])
