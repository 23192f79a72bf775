"""The format stage at scale: parallel jobs, segments cut from one decode, m4a/opus via ffmpeg, flac output.

A small corpus of mixed audio (8 kHz wav, 44.1 kHz stereo flac, m4a, opus, a pipe, a
recording with 3 segments) is formatted with 1 and 2 jobs; the outputs must be
identical. The throughput benchmark (bench/bench_format.py, >= 10,000 clips) is not
part of the default run; a tiny run of it checks that it works.
"""
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _helpers import run, skip_or_fail

from espnet_plugins.data import audio_format
from espnet_plugins.data.kaldi import DataDirError, read_map, validate_data_dir

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fmt = _load(ROOT / "local" / "format_data_dir.py")


def _tone(rate: int, dur: float, channels: int = 1, f0: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * dur)) / rate
    x = 0.3 * np.sin(2 * np.pi * f0 * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def _ffmpeg(src: Path, dst: Path, *codec: str) -> Path:
    if shutil.which("ffmpeg") is None:
        skip_or_fail("ffmpeg is not installed (tools/install.sh installs it)")
    run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *codec, str(dst)], check=True, timeout=60)
    return dst


def _write_dir(d: Path, wav: dict, utts: list, segments: dict = None) -> Path:
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(wav.items())))
    (d / "text").write_text("".join(f"{u} word {u}\n" for u in sorted(utts)))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    spk: dict = {}
    for u in sorted(utts):
        spk.setdefault(u.split("-")[0], []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk.items())))
    (d / "utt2lang").write_text("".join(f"{u} hi\n" for u in sorted(utts)))
    if segments:
        (d / "segments").write_text("".join(f"{u} {v}\n" for u, v in sorted(segments.items())))
    return d


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """8 utterances from 6 recordings: 2 cut from one (segments dirs need a recording per line)."""
    tmp = tmp_path_factory.mktemp("mixed")
    a = tmp / "audio"
    a.mkdir()
    sf.write(a / "r1.wav", _tone(8000, 0.5), 8000, subtype="PCM_16")
    sf.write(a / "r2.flac", _tone(44100, 0.7, channels=2), 44100)
    sf.write(a / "r3.wav", _tone(16000, 0.6), 16000, subtype="PCM_16")  # in place
    sf.write(a / "src.wav", _tone(48000, 0.8), 48000)
    _ffmpeg(a / "src.wav", a / "r4.m4a", "-c:a", "aac", "-b:a", "64k")
    _ffmpeg(a / "src.wav", a / "r5.opus", "-c:a", "libopus", "-b:a", "32k")
    sf.write(a / "long.wav", _tone(22050, 3.0), 22050)
    wav = {"r1": str(a / "r1.wav"), "r2": str(a / "r2.flac"), "r3": str(a / "r3.wav"), "r4": str(a / "r4.m4a"),
           "r5": str(a / "r5.opus"), "r6": f"sox {a / 'src.wav'} -t wav - |"}
    plain = _write_dir(tmp / "plain", wav, list(wav))
    seg = _write_dir(tmp / "seg", {"rec1": str(a / "long.wav"), "rec2": str(a / "r3.wav")},
                     ["s-1", "s-2", "s-3", "t-1"],
                     {"s-1": "rec1 0.0 1.0", "s-2": "rec1 1.0 2.5", "s-3": "rec1 2.5 -1", "t-1": "rec2 0.1 0.5"})
    return plain, seg


def _format(src: Path, dst: Path, **kw) -> Path:
    fmt.format_dir(src, dst, **kw)
    validate_data_dir(dst)
    return dst


def _audio(d: Path) -> dict:
    return {u: sf.read(p, dtype="int16")[0].tobytes() for u, p in read_map(d / "wav.scp").items()}


def test_parallel_equals_serial_and_formats_every_decoder(mixed, tmp_path, caplog):
    plain, _ = mixed
    with caplog.at_level("INFO"):
        one = _format(plain, tmp_path / "nj1" / "train")
        two = _format(plain, tmp_path / "nj2" / "train", nj=2)
    assert _audio(one) == _audio(two)
    assert read_map(one / "utt2num_samples") == read_map(two / "utt2num_samples")
    samples = {u: int(n) for u, n in read_map(two / "utt2num_samples").items()}
    want = {"r1": 0.5, "r2": 0.7, "r3": 0.6, "r4": 0.8, "r5": 0.8, "r6": 0.8}
    for u, dur in want.items():  # m4a / opus add encoder padding
        assert samples[u] / 16000 == pytest.approx(dur, abs=0.03 if u in ("r4", "r5") else 1e-3), u
    for u, p in read_map(two / "wav.scp").items():
        info = sf.info(p)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert read_map(two / "wav.scp")["r3"] == str(Path(read_map(plain / "wav.scp")["r3"]).resolve())  # in place
    x, _ = sf.read(read_map(two / "wav.scp")["r2"])  # 44.1 kHz stereo 440 Hz tone, resampled: still 440 Hz
    spectrum = np.abs(np.fft.rfft(x[:8000]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) <= 2
    progress = [m for m in caplog.messages if re.search(r"\d+/6 recordings \(\d+ %\), [\d.]+ h of audio", m)]
    assert progress and "6/6 recordings (100 %)" in progress[-1]


def test_flac_output(mixed, tmp_path):
    plain, _ = mixed
    wav = _format(plain, tmp_path / "w" / "train")
    flac = _format(plain, tmp_path / "f" / "train", nj=2, audio_format="flac")
    paths = read_map(flac / "wav.scp")
    assert all(p.endswith(".flac") for u, p in paths.items() if u != "r3")
    assert sf.info(paths["r1"]).format == "FLAC"
    assert _audio(wav) == _audio(flac)  # lossless


def test_segments_cut_from_one_decode(mixed, tmp_path, monkeypatch):
    _, seg = mixed
    calls = []
    real = audio_format.decode
    monkeypatch.setattr(audio_format, "decode", lambda entry, fs=16000: calls.append(entry) or real(entry, fs))
    dst = _format(seg, tmp_path / "seg" / "train")
    assert sorted(calls) == sorted(read_map(seg / "wav.scp").values())  # one decode per recording
    assert not (dst / "segments").exists()
    samples = {u: int(n) for u, n in read_map(dst / "utt2num_samples").items()}
    assert samples == {"s-1": 16000, "s-2": 24000, "s-3": 8000, "t-1": 6400}
    whole = real(read_map(seg / "wav.scp")["rec1"])
    assert sf.read(read_map(dst / "wav.scp")["s-2"], dtype="int16")[0].tobytes() == whole[16000:40000].tobytes()
    assert read_map(dst / "text")["t-1"] == "word t 1"  # normalised
    two = _format(seg, tmp_path / "seg2" / "train", nj=2)
    assert _audio(two) == _audio(dst)


def test_segment_errors_name_the_line(mixed, tmp_path):
    _, seg = mixed
    bad = tmp_path / "bad"
    shutil.copytree(seg, bad)
    (bad / "segments").write_text("s-1 rec1 0.0 1.0\ns-2 rec1 1.0 4.5\ns-3 rec1 2.5 -1\nt-1 rec2 0.1 0.5\n")
    with pytest.raises(DataDirError, match=r"bad/segments:2: utterance 's-2' .*long.wav.*beyond the end of "
                                           r"recording 'rec1' \(3.000 s\)"):
        fmt.format_dir(bad, tmp_path / "out" / "train", nj=2)
    assert not (tmp_path / "out" / "train").exists() and not (tmp_path / "out" / "train.tmp").exists()
    (bad / "segments").write_text("s-1 rec1 0.0 1.0\ns-2 rec1 1.0 x\ns-3 rec1 2.5 -1\nt-1 rec2 0.1 0.5\n")
    with pytest.raises(DataDirError, match=r"bad/segments:2: start/end '1.0' 'x' of 's-2' are not numbers"):
        fmt.format_dir(bad, tmp_path / "out" / "train")
    (bad / "segments").write_text("s-1 rec1 0.0 1.0\ns-2 rec1 1.0 2.5\ns-3 rec9 2.5 -1\nt-1 rec2 0.1 0.5\n")
    with pytest.raises(DataDirError, match=r"bad/segments:3: recording 'rec9' of segment 's-3' is not in wav.scp"):
        fmt.format_dir(bad, tmp_path / "out" / "train")


def test_first_bad_line_is_reported_with_jobs(mixed, tmp_path):
    plain, _ = mixed
    bad = tmp_path / "bad"
    shutil.copytree(plain, bad)
    broken = tmp_path / "broken.m4a"
    broken.write_bytes(b"not audio at all" * 100)
    lines = (bad / "wav.scp").read_text().splitlines()
    lines[3] = f"r4 {broken}"
    lines[5] = "r6 false |"
    (bad / "wav.scp").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataDirError) as e:
        fmt.format_dir(bad, tmp_path / "out" / "train", nj=2)
    assert re.search(r"bad/wav.scp:4: cannot read the audio of utterance 'r4' \(.*broken.m4a\): ffmpeg failed: .*"
                     r"ffprobe", str(e.value)), e.value


def test_cli_nj_and_format(mixed, tmp_path):
    plain, _ = mixed
    dst = tmp_path / "dump" / "train"
    proc = run([sys.executable, str(ROOT / "local" / "format_data_dir.py"), "--src", str(plain), "--dst", str(dst),
                "--nj", "2", "--audio_format", "flac"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "formatting 6 recordings with 2 job(s)" in proc.stderr and "5 converted to 16000 Hz mono 16-bit flac" \
        in proc.stderr
    validate_data_dir(dst)


def test_bench_format_tiny(tmp_path):
    """bench/bench_format.py end to end on 40 clips (the real run uses >= 10,000)."""
    out = tmp_path / "format.md"
    proc = run([sys.executable, str(ROOT / "bench" / "bench_format.py"), "--num_clips", "40", "--jobs", "1", "2",
                "--workdir", str(tmp_path / "work"), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")]
    assert [r[:2] for r in rows[1:]] == [["today's stage 2 (one sox per file)", "1"], ["this stage 2, --nj 1", "1"],
                                         ["this stage 2, --nj 2", "2"]], table
    for r in rows[1:]:
        wall, hours, rate = float(r[2]), float(r[3]), float(r[4])
        assert wall > 0 and hours > 0 and rate == pytest.approx(60 * hours / wall, rel=0.1, abs=2e-3), r


def test_other_output_rate(mixed, tmp_path):
    plain, _ = mixed
    dst = _format(plain, tmp_path / "fs8k" / "train", nj=2, fs=8000)
    wav = read_map(dst / "wav.scp")
    assert all(sf.info(p).samplerate == 8000 for p in wav.values())
    assert wav["r1"] == read_map(plain / "wav.scp")["r1"]  # 8 kHz mono 16-bit wav: in place at --fs 8000
    assert wav["r3"].startswith(str(dst.resolve()))  # the 16 kHz one is converted
    assert int(read_map(dst / "utt2num_samples")["r1"]) == 4000 and int(read_map(dst / "utt2num_samples")["r3"]) == 4800
