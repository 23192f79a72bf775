"""Training options for real data: speed perturbation, narrowband copy, language balancing, noise / RIR.

Data-dir level (espnet_plugins/data/perturb.py, local/augment_data_dir.py), through the
format stage (the copies are sox pipes it decodes), and through run.sh stages 2-3 on a
tiny corpus; noise / RIR lists through ESPnet's own preprocessor as the task builds it.
"""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _helpers import run

from espnet_plugins.data.kaldi import read_map, validate_data_dir
from espnet_plugins.data.perturb import balance_languages, language_weights, narrowband, speed_perturb
from espnet_plugins.tasks.asr import MoEASRTask

from test_format_stage import fmt
from test_presets import BASE_PRESET, lists, parse  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "indic_synth" / "asr1"
LANGS = {"a-1": "hi", "a-2": "hi", "a-3": "hi", "a-4": "hi", "a-5": "hi", "a-6": "hi", "b-1": "ta", "b-2": "ta"}


def _tone(path: Path, rate: int = 16000, dur: float = 1.0, f0: float = 440.0) -> str:
    t = np.arange(int(rate * dur)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * f0 * t), rate, subtype="PCM_16")
    return str(path)


def _dir(d: Path, audio: Path, langs: dict, rate: int = 16000) -> Path:
    d.mkdir(parents=True)
    audio.mkdir(exist_ok=True)
    wav = {u: _tone(audio / f"{d.name}-{u}.wav", rate, f0=300 + 50 * i) for i, u in enumerate(langs)}
    (d / "wav.scp").write_text("".join(f"{u} {wav[u]}\n" for u in sorted(langs)))
    (d / "text").write_text("".join(f"{u} ka kha\n" for u in sorted(langs)), encoding="utf-8")
    (d / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in sorted(langs)))
    spk: dict = {}
    for u in sorted(langs):
        spk.setdefault(u[0], []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk.items())))
    (d / "utt2lang").write_text("".join(f"{u} {langs[u]}\n" for u in sorted(langs)))
    (d / "spk2gender").write_text("a f\nb m\n")
    return d


def test_speed_perturbation_as_espnet(tmp_path):
    src = _dir(tmp_path / "train", tmp_path / "audio", LANGS)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    assert speed_perturb(src, tmp_path / "train_sp", [0.9, 1.0, 1.1]) == 24
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    sp = tmp_path / "train_sp"
    utt2spk = read_map(sp / "utt2spk")
    assert utt2spk["sp0.9-a-1"] == "sp0.9-a" and utt2spk["a-1"] == "a" and utt2spk["sp1.1-b-2"] == "sp1.1-b"
    assert read_map(sp / "utt2lang")["sp1.1-b-1"] == "ta" and read_map(sp / "text")["sp0.9-a-3"] == "ka kha"
    assert read_map(sp / "spk2gender") == {"a": "f", "b": "m", "sp0.9-a": "f", "sp0.9-b": "m", "sp1.1-a": "f",
                                           "sp1.1-b": "m"}
    out = tmp_path / "dump" / "train_sp"
    fmt.format_dir(sp, out, nj=2)
    n = {u: int(v) for u, v in read_map(out / "utt2num_samples").items()}
    assert n["a-1"] == 16000 and n["sp0.9-a-1"] == pytest.approx(16000 / 0.9, abs=2) and \
        n["sp1.1-a-1"] == pytest.approx(16000 / 1.1, abs=2)
    x, _ = sf.read(read_map(out / "wav.scp")["sp1.1-a-1"])  # speed changes pitch too: 300 Hz -> 330 Hz
    assert abs(np.argmax(np.abs(np.fft.rfft(x[:14000]))) * 16000 / 14000 - 330) < 3


def test_speed_perturbation_of_segments(tmp_path):
    src = _dir(tmp_path / "train", tmp_path / "audio", {"a-1": "hi", "a-2": "hi"})
    (src / "wav.scp").write_text(f"rec {_tone(tmp_path / 'audio' / 'rec.wav', dur=2.0)}\n")
    (src / "segments").write_text("a-1 rec 0.0 0.9\na-2 rec 0.9 1.8\n")
    speed_perturb(src, tmp_path / "sp", [0.9, 1.0])
    seg = read_map(tmp_path / "sp" / "segments")
    assert seg["sp0.9-a-2"] == "sp0.9-rec 1.000 2.000" and seg["a-1"] == "rec 0.000 0.900"
    fmt.format_dir(tmp_path / "sp", tmp_path / "out", nj=2)
    n = read_map(tmp_path / "out" / "utt2num_samples")
    assert n["sp0.9-a-2"] == "16000" and n["a-2"] == "14400"


def test_narrowband_copy_has_no_energy_above_4khz(tmp_path):
    langs = {"a-1": "hi", "b-1": "ta"}
    src = _dir(tmp_path / "train", tmp_path / "audio", langs, rate=16000)
    noise = np.random.default_rng(0).standard_normal(16000) * 0.1  # white noise: energy at every frequency
    sf.write(read_map(src / "wav.scp")["a-1"], noise, 16000, subtype="PCM_16")
    assert narrowband(src, tmp_path / "nb") == 4
    assert read_map(tmp_path / "nb" / "utt2spk")["nb-a-1"] == "a"
    fmt.format_dir(tmp_path / "nb", tmp_path / "out", nj=2)
    wav = read_map(tmp_path / "out" / "wav.scp")

    def high_share(path):
        spec = np.abs(np.fft.rfft(sf.read(path)[0])) ** 2
        return spec[int(len(spec) * 4000 / 8000):].sum() / spec.sum()

    assert high_share(wav["a-1"]) > 0.4 and high_share(wav["nb-a-1"]) < 0.01
    assert read_map(tmp_path / "out" / "utt2num_samples")["nb-a-1"] == "16000"


def test_language_balancing_by_temperature(tmp_path):
    src = _dir(tmp_path / "train", tmp_path / "audio", LANGS)
    (src / "utt2num_samples").write_text("".join(f"{u} 16000\n" for u in sorted(LANGS)))
    q = language_weights({"hi": 6, "ta": 2}, 2.0)
    assert q["ta"] / q["hi"] == pytest.approx((2 / 6) ** 0.5)
    assert balance_languages(src, tmp_path / "t1", 1.0) == {"hi": (6, 6), "ta": (2, 2)}  # T=1: as is
    summary = balance_languages(src, tmp_path / "t2", 2.0, seed=3)
    assert summary == {"hi": (6, 6), "ta": (2, round(6 * (2 / 6) ** 0.5 * 2 / 2))}  # 6 * sqrt(1/3) = 3.46 -> 3
    utt2lang = read_map(tmp_path / "t2" / "utt2lang")
    assert sorted(u for u, lang in utt2lang.items() if lang == "ta")[:2] == ["b-1", "b-2"]
    copies = [u for u in utt2lang if u.startswith("bal")]
    assert len(copies) == 1 and read_map(tmp_path / "t2" / "wav.scp")[copies[0]] == \
        read_map(src / "wav.scp")[copies[0].split("-", 1)[1]]  # same audio, no copy
    assert read_map(tmp_path / "t2" / "utt2num_samples")[copies[0]] == "16000"
    big = balance_languages(src, tmp_path / "t100", 100.0)
    assert big == {"hi": (6, 6), "ta": (2, 6)}  # ~equalised


def test_run_sh_stages_2_3_with_augmentation(tmp_path):
    data = tmp_path / "data"
    _dir(data / "train", tmp_path / "audio", LANGS)
    _dir(data / "dev", tmp_path / "audio", {"a-7": "hi", "b-7": "ta"})
    cmd = ["./run.sh", "--stage", "2", "--stop_stage", "3", "--nj", "2", "--datadir", str(data),
           "--dumpdir", str(tmp_path / "dump"), "--expdir", str(tmp_path / "exp"), "--min_dur", "0.1",
           "--speed_perturb_factors", "0.9 1.0 1.1", "--narrowband_train", "true", "--lang_temperature", "2"]
    res = run(cmd, cwd=RECIPE, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    train = tmp_path / "dump" / "raw" / "train_sp_nb_bal_T2"
    validate_data_dir(train)
    utts = list(read_map(train / "utt2lang"))
    assert {"a-1", "sp0.9-a-1", "sp1.1-b-2", "nb-sp0.9-a-1", "nb-b-1"} <= set(utts)
    assert sum(1 for u in utts if not u.startswith("bal")) == 8 * 3 * 2
    assert any(u.startswith("bal1-") for u in utts)  # ta upsampled
    assert read_map(tmp_path / "dump" / "raw" / "dev" / "utt2lang").keys() == {"a-7", "b-7"}  # valid untouched
    res = run(cmd, cwd=RECIPE, capture_output=True, text=True, timeout=600)  # rerun: skips
    assert res.returncode == 0 and "exists, skipping" in res.stdout + res.stderr


def test_noise_and_rir_lists_reach_espnets_preprocessor(lists, tmp_path):  # noqa: F811
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.wav"
    sf.write(noise, rng.standard_normal(32000) * 0.3, 16000, subtype="PCM_16")
    rir = np.zeros(2000)
    rir[0], rir[800] = 1.0, 0.6
    sf.write(tmp_path / "rir.wav", rir, 16000, subtype="FLOAT")
    (tmp_path / "noise.scp").write_text(f"n1 {noise}\n")
    (tmp_path / "rir.scp").write_text(f"r1 {tmp_path / 'rir.wav'}\n")
    args = parse(BASE_PRESET, lists, "--use_preprocessor", "true", "--token_type", "char", "--cleaner", "none",
                 "--g2p", "none", "--noise_scp", str(tmp_path / "noise.scp"), "--rir_scp", str(tmp_path / "rir.scp"),
                 "--noise_apply_prob", "1.0", "--rir_apply_prob", "1.0", "--noise_db_range", "5_5")
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    train_fn = MoEASRTask.build_preprocess_fn(args, train=True)
    assert train_fn.inner.noises and train_fn.inner.rirs  # the lists were read
    out = train_fn("u1", {"speech": x.copy(), "text": "\u0915", "lang": "hi"})
    y = out["speech"]  # ESPnet returns (T, 1) after RIR/noise; its frontends take a channel axis
    assert y.shape in ((16000,), (16000, 1))
    y = y.reshape(-1)
    assert np.isfinite(y).all() and not np.allclose(y, x, atol=1e-3)
    assert out["lang"].tolist() == [0]
    valid = MoEASRTask.build_preprocess_fn(args, train=False)("u1", {"speech": x.copy(), "text": "\u0915"})
    assert np.array_equal(valid["speech"], x)  # validation / inference audio stays clean
