"""Bad user data dirs: every case gets a clear error (file, line, fix) or a documented auto-fix.

One test per case; docs/troubleshooting_data.md lists the same cases with the messages.
Audio is 0.5 s of sine written with soundfile (converted with sox where a case needs
another format), so the whole file runs in a few seconds.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _helpers import run, skip_or_fail

from espnet_plugins.data.kaldi import DataDirError, read_map, validate_data_dir

ROOT = Path(__file__).resolve().parents[1]
DUR = 0.5


def _load_local(name: str):
    """Import ``local/<name>.py`` (a script, not a package module) in-process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "local" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


format_data_dir = _load_local("format_data_dir")


def _sine(path: Path, rate: int = 16000, channels: int = 1, dur: float = DUR, subtype: str = "PCM_16") -> Path:
    t = np.arange(int(rate * dur)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, rate, subtype=subtype)
    return path


def _write_dir(d: Path, wavs: dict, texts: dict = None, langs: dict = None) -> Path:
    """Write ``wav.scp text utt2spk spk2utt utt2lang``; ids are ``<spk>-<n>``, sorted by the caller."""
    d.mkdir(parents=True, exist_ok=True)
    texts = texts if texts is not None else {u: f"word {u}" for u in wavs}
    langs = langs if langs is not None else {u: "hi" if u.startswith("a") else "ta" for u in wavs}
    spk2utt: dict = {}
    for u in wavs:
        spk2utt.setdefault(u.split("-")[0], []).append(u)
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in wavs.items()))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in texts.items()), encoding="utf-8")
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in wavs))
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))
    (d / "utt2lang").write_text("".join(f"{u} {lang}\n" for u, lang in langs.items()))
    return d


@pytest.fixture
def good(tmp_path) -> Path:
    """A valid dir: 3 utterances (a-1 a-2 hi, b-1 ta), 16 kHz mono 16-bit wav."""
    audio = tmp_path / "audio"
    audio.mkdir()
    wavs = {u: str(_sine(audio / f"{u}.wav")) for u in ("a-1", "a-2", "b-1")}
    return _write_dir(tmp_path / "src", wavs)


def _snapshot(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _one_utt_dir(tmp_path: Path, audio: Path) -> Path:
    return _write_dir(tmp_path / "src", {"a-1": str(audio)})


def _format(src: Path, tmp_path: Path, **kwargs) -> Path:
    dst = tmp_path / "dump" / "org" / "train"
    format_data_dir.format_dir(src, dst, **kwargs)
    return dst


def _raises(src: Path, pattern: str, **kwargs) -> str:
    with pytest.raises(DataDirError) as e:
        validate_data_dir(src, **kwargs)
    assert re.search(pattern, str(e.value)), str(e.value)
    return str(e.value)


# --- validator: ids and values ----------------------------------------------------------------

def test_good_dir_is_valid(good):
    validate_data_dir(good, lang_list=["hi", "ta"])


def test_unsorted(good):
    (good / "utt2lang").write_text("a-2 hi\na-1 hi\nb-1 ta\n")
    msg = _raises(good, r"src/utt2lang:2: not sorted: 'a-1' comes after 'a-2'")
    assert "LC_ALL=C sort utt2lang -o utt2lang" in msg


def test_duplicate_id(good):
    (good / "text").write_text("a-1 x\na-1 y\na-2 z\nb-1 w\n")
    msg = _raises(good, r"src/text:2: duplicate id 'a-1' \(first on line 1\)")
    assert "remove or rename one of them" in msg


def test_id_missing_in_text(good):
    (good / "text").write_text("a-1 x\nb-1 w\n")
    msg = _raises(good, r"src/wav.scp:2: utterance 'a-2' has no entry in text")
    assert "add it to text or delete the utterance from wav.scp" in msg and "fix_data_dir.sh" in msg


def test_id_missing_in_wav_scp(good):
    (good / "text").write_text("a-1 x\na-2 y\nb-1 w\nb-2 v\n")
    msg = _raises(good, r"src/text:4: utterance 'b-2' is not in wav.scp")
    assert "add its audio to wav.scp or delete the line" in msg


def test_empty_transcript(good):
    (good / "text").write_text("a-1 x\na-2\nb-1 w\n")
    msg = _raises(good, r"src/text:2: empty transcript for utterance 'a-2'")
    assert "drop the utterance" in msg


def test_unknown_language(good, tmp_path):
    (tmp_path / "lang_list").write_text("hi\nte\n")
    msg = _raises(good, r"src/utt2lang:3: language 'ta' of utterance 'b-1' is not in .*lang_list \(known: hi te\)",
                  lang_list=tmp_path / "lang_list")
    assert "1 utterance(s) have it" in msg and "add it to the lang_list" in msg and "drop these utterances" in msg
    _raises(good, r"utt2lang:3: language 'ta' .* not in the lang_list \(known: hi\)", lang_list=["hi"])
    (good / "utt2lang").write_text("a-1 hi\na-2 hi te\nb-1 te\n")  # code-switched: every label must be known
    validate_data_dir(good, lang_list=tmp_path / "lang_list")
    (tmp_path / "lang_list").write_text("hi\nte\nhi\n")
    _raises(good, r"lang_list:3: duplicate language 'hi' \(first on line 1\)", lang_list=tmp_path / "lang_list")
    (tmp_path / "lang_list").write_text("hi te\n")
    _raises(good, r"lang_list:1: 'hi te': one language per line", lang_list=tmp_path / "lang_list")


def test_unknown_language_format_cli(good, tmp_path):
    (tmp_path / "lang_list").write_text("hi\n")
    dst = tmp_path / "dump" / "train"
    proc = run([sys.executable, str(ROOT / "local" / "format_data_dir.py"), "--src", str(good),
                "--dst", str(dst), "--lang_list", str(tmp_path / "lang_list")],
               capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "utt2lang:3: language 'ta'" in proc.stderr and "Traceback" not in proc.stderr
    assert not dst.exists() and not dst.with_name("train.tmp").exists()  # nothing half-written


def test_missing_wav_file(good, tmp_path):
    (tmp_path / "audio" / "a-2.wav").unlink()
    msg = _raises(good, r"src/wav.scp:2: wav file '.*a-2.wav' of 'a-2' does not exist")
    assert "relative paths are taken from the current directory" in msg


def test_segments_not_supported(good):
    (good / "segments").write_text("a-1 rec 0 1\n")
    _raises(good, r"segments: data dirs with segments are not supported.*import_kaldi_dir.py")


# --- validator: bytes -------------------------------------------------------------------------

def test_crlf_is_an_error(good):
    (good / "text").write_bytes(b"a-1 x\r\na-2 y\r\nb-1 w\r\n")
    msg = _raises(good, r"src/text:1: Windows line end \(CRLF")
    assert "sed -i 's/\\r$//' " in msg and "dos2unix" in msg
    assert read_map(good / "text", allow_crlf=True) == {"a-1": "x", "a-2": "y", "b-1": "w"}  # opt-in strips \r
    validate_data_dir(good, allow_crlf=True)


def test_crlf_auto_fixed_by_format(good, tmp_path, caplog):
    (good / "spk2gender").write_text("a f\nb m\n")  # a map the validator does not read is fixed too
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2lang", "spk2gender"):
        (good / name).write_bytes((good / name).read_bytes().replace(b"\n", b"\r\n"))
    before = _snapshot(good)
    with caplog.at_level("INFO"):
        dst = _format(good, tmp_path)
    assert _snapshot(good) == before  # the source is untouched, byte for byte
    assert all(b"\r" not in p.read_bytes() for p in dst.iterdir() if p.is_file())
    validate_data_dir(dst)
    assert (dst / "spk2gender").read_bytes() == b"a f\nb m\n"
    assert "converted Windows line ends (CRLF) to LF in the copies of spk2gender, spk2utt, text, utt2lang, utt2spk, " \
        "wav.scp (source files unchanged)" in caplog.text


def test_cr_only_line_ends(good):
    (good / "utt2lang").write_bytes(b"a-1 hi\ra-2 hi\rb-1 ta\r")
    _raises(good, r"utt2lang:1: carriage return .* inside a line .*mac2unix", allow_crlf=True)


def test_non_utf8(good):
    (good / "text").write_bytes("a-1 x\na-2 café\nb-1 w\n".encode("latin-1"))
    msg = _raises(good, r"src/text:2: not UTF-8: byte 0xe9 at byte offset 13 of the file \(byte 8 of the line\)")
    assert "iconv -f <encoding> -t utf-8" in msg


def test_utf16(good):
    (good / "text").write_text("a-1 x\na-2 y\nb-1 w\n", encoding="utf-16")
    _raises(good, r"src/text:1: not UTF-8: byte 0xff at byte offset 0 .*iconv -f utf-16 -t utf-8")


def test_bom(good, tmp_path):
    (good / "utt2spk").write_bytes(b"\xef\xbb\xbf" + (good / "utt2spk").read_bytes())
    msg = _raises(good, r"src/utt2spk:1: file starts with a UTF-8 byte-order mark \(BOM")
    assert "sed -i '1s/^\\xEF\\xBB\\xBF//'" in msg
    before = _snapshot(good)
    dst = _format(good, tmp_path)  # auto-fix: stripped in the copy
    assert _snapshot(good) == before and list(read_map(dst / "utt2spk")) == ["a-1", "a-2", "b-1"]


# --- format stage: audio ----------------------------------------------------------------------

def test_zero_length_wav(good, tmp_path):
    sf.write(tmp_path / "audio" / "a-2.wav", np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(DataDirError, match=r"src/wav.scp:2: utterance 'a-2' has zero-length audio .*a-2.wav.*drop"):
        _format(good, tmp_path)
    assert not (tmp_path / "dump" / "org").exists() or not any((tmp_path / "dump" / "org").iterdir())


def test_corrupt_header(good, tmp_path):
    (tmp_path / "audio" / "b-1.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(DataDirError) as e:
        _format(good, tmp_path)
    msg = str(e.value)
    assert re.search(r"src/wav.scp:3: cannot read the audio of utterance 'b-1' \(.*b-1.wav\): sox failed: ", msg), msg
    assert "soxi" in msg and "Traceback" not in msg


def test_failing_pipe(good, tmp_path):
    audio = tmp_path / "audio"
    (good / "wav.scp").write_text(f"a-1 {audio / 'a-1.wav'}\na-2 cat {audio / 'gone.wav'} |\nb-1 {audio / 'b-1.wav'}\n")
    with pytest.raises(DataDirError) as e:
        _format(good, tmp_path)
    assert re.search(r"wav.scp:2: cannot read the audio of utterance 'a-2' \(cat .*gone.wav \|\): the pipe failed: "
                     r"cat: .*gone.wav: No such file or directory; .*run the command by hand", str(e.value)), e.value


def _sox_can_write_mp3(tmp_path: Path) -> bool:
    res = run(["sox", "-n", "-r", "16000", str(tmp_path / "probe.mp3"), "trim", "0", "0.1"],
              capture_output=True, timeout=60)
    return res.returncode == 0


@pytest.mark.parametrize(
    "name, rate, channels, via_sox",
    [("stereo44k.wav", 44100, 2, False), ("8k.wav", 8000, 1, False), ("48k.wav", 48000, 1, False),
     ("float16k.wav", 16000, 1, False), ("audio.flac", 22050, 1, False), ("audio.mp3", 44100, 2, True)],
    ids=["stereo_44k", "8k", "48k", "float32_wav", "flac", "mp3"],
)
def test_audio_converted(tmp_path, name, rate, channels, via_sox):
    """Anything but 16 kHz mono 16-bit wav becomes one, in dump/, the source untouched."""
    src_audio = tmp_path / name
    if via_sox:
        if not _sox_can_write_mp3(tmp_path):
            skip_or_fail("this sox cannot write mp3 (no libsox-fmt-mp3 / lame)")
        run(["sox", str(_sine(tmp_path / "tmp.wav", rate, channels)), str(src_audio)], check=True, timeout=60)
    else:
        _sine(src_audio, rate, channels, subtype="FLOAT" if name.startswith("float") else "PCM_16")
    before = src_audio.read_bytes()
    dst = _format(_one_utt_dir(tmp_path, src_audio), tmp_path)
    out = read_map(dst / "wav.scp")["a-1"]
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "WAV", "PCM_16")
    assert info.duration == pytest.approx(DUR, abs=0.06)  # mp3 adds encoder padding
    assert out.startswith(str(dst.resolve() / "wav")) and src_audio.read_bytes() == before
    assert read_map(dst / "utt2num_samples")["a-1"] == str(info.frames)


def test_good_audio_referenced_in_place(good, tmp_path):
    dst = _format(good, tmp_path)
    assert read_map(dst / "wav.scp")["a-1"] == str((tmp_path / "audio" / "a-1.wav").resolve())
    assert not (dst / "wav").exists()


# --- filter stage -----------------------------------------------------------------------------

def test_too_short_filtered_with_count(tmp_path):
    """0.05-0.2 s: shorter than --min_dur 0.3 (0.05 s is even below conv2d's 7-frame minimum)."""
    audio = tmp_path / "audio"
    audio.mkdir()
    durs = {"a-1": 0.05, "a-2": 0.1, "a-3": 0.5, "b-1": 0.2, "b-2": 0.5}
    src = _write_dir(tmp_path / "src", {u: str(_sine(audio / f"{u}.wav", dur=d)) for u, d in durs.items()})
    org = _format(src, tmp_path)
    dst = tmp_path / "dump" / "train"
    proc = run([sys.executable, str(ROOT / "local" / "filter_data_dir.py"), "--src", str(org),
                "--dst", str(dst)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "kept 2/5; removed 3 too short (< 0.3 s), 0 too long (> 20 s), 0 with empty text" in proc.stderr
    assert list(read_map(dst / "utt2spk")) == ["a-3", "b-2"]
    validate_data_dir(dst)


# --- CLI --------------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, str(ROOT / "local" / "validate_data_dir.py"), *map(str, args)],
               capture_output=True, text=True, timeout=120)


def test_cli_valid(good, tmp_path):
    proc = _cli(good)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == f"{good}: OK: 3 utterances, 2 speakers, 2 languages (hi ta), 0.00 hours\n"
    (tmp_path / "lang_list").write_text("hi\nta\n")
    assert _cli(good, "--lang_list", tmp_path / "lang_list").returncode == 0
    (good / "text").unlink()
    proc = _cli(good, "--no_text", "--no_duration")
    assert proc.returncode == 0 and proc.stdout == f"{good}: OK: 3 utterances, 2 speakers, 2 languages (hi ta)\n"


def test_cli_invalid(good, tmp_path):
    (good / "text").write_bytes(b"a-1 x\r\na-2 y\r\nb-1 w\r\n")
    proc = _cli(good)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {good / 'text'}:1: Windows line end") and "dos2unix" in proc.stderr
    (good / "text").unlink()
    proc = _cli(good)
    assert proc.returncode == 1 and "missing required file 'text'" in proc.stderr and "--no_text" in proc.stderr
    (tmp_path / "lang_list").write_text("hi\n")
    proc = _cli(good, "--no_text", "--lang_list", tmp_path / "lang_list")
    assert proc.returncode == 1 and "utt2lang:3: language 'ta'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_import_is_light():
    code = (f"import sys, runpy; sys.argv = ['v', '--help']\n"
            f"try: runpy.run_path({str(ROOT / 'local' / 'validate_data_dir.py')!r}, run_name='__main__')\n"
            f"except SystemExit: pass\n"
            f"heavy = [m for m in ('torch', 'espnet', 'espnet2') if m in sys.modules]\n"
            f"assert not heavy, heavy")
    proc = run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# --- CLI: audio content ------------------------------------------------------------------------

def _bad_audio_dir(tmp_path: Path, bad: Path) -> Path:
    """The dir of ``good`` with b-1's audio replaced by ``bad`` (line 3 of wav.scp)."""
    audio = tmp_path / "audio"
    audio.mkdir(exist_ok=True)
    wavs = {u: str(_sine(audio / f"{u}.wav")) for u in ("a-1", "a-2")}
    return _write_dir(tmp_path / "src", {**wavs, "b-1": str(bad)})


def test_cli_rejects_a_corrupt_header_without_deep(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF" + np.random.default_rng(0).bytes(3000))
    d = _bad_audio_dir(tmp_path, bad)
    for extra in ((), ("--deep",), ("--no_duration",)):
        proc = _cli(d, *extra)
        assert proc.returncode == 1 and proc.stdout == "", proc.stdout
        assert proc.stderr.startswith(f"error: {d / 'wav.scp'}:3: cannot read the audio header")
        assert "'b-1'" in proc.stderr and "soxi" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_rejects_zero_length_audio(tmp_path):
    bad = tmp_path / "empty.wav"
    sf.write(bad, np.zeros(0), 16000, subtype="PCM_16")
    proc = _cli(_bad_audio_dir(tmp_path, bad))
    assert proc.returncode == 1 and "wav.scp:3: zero-length audio" in proc.stderr


def test_cli_deep_rejects_nan_samples_and_warns_on_silence(tmp_path):
    x = 0.1 * np.sin(np.arange(8000) / 5.0).astype(np.float32)
    x[1234] = np.nan
    bad = tmp_path / "nan.wav"
    sf.write(bad, x, 16000, subtype="FLOAT")
    d = _bad_audio_dir(tmp_path, bad)
    assert _cli(d).returncode == 0  # the header is fine: only decoding the samples finds it
    proc = _cli(d, "--deep")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {d / 'wav.scp'}:3: 1 NaN/inf sample value(s), the first in frame 1234")
    sf.write(bad, np.zeros(8000, dtype=np.float32), 16000, subtype="FLOAT")
    proc = _cli(d, "--deep")
    assert proc.returncode == 0 and proc.stdout.startswith(f"{d}: OK: 3 utterances")
    assert proc.stderr.startswith(f"warning: {d / 'wav.scp'}:3: audio of utterance 'b-1'") and "all zeros" in proc.stderr


def test_cli_deep_passes_a_good_dir_and_skips_pipes(good, tmp_path):
    proc = _cli(good, "--deep")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == f"{good}: OK: 3 utterances, 2 speakers, 2 languages (hi ta), 0.00 hours\n"
    wav = read_map(good / "wav.scp")
    wav["b-1"] = f"cat {wav['b-1']} |"
    (good / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in wav.items()))
    proc = _cli(good, "--deep")
    assert proc.returncode == 0 and "1 piped entries not measured" in proc.stdout
