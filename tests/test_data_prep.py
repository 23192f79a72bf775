"""Common Voice and Kaldi-dir importers on tiny fixtures the tests synthesise (espeak-ng + sox).

The audio in wav.scp is read back the way the recipe reads it: pipes through ESPnet's
``kaldi_ark`` loader (kaldiio runs the command and parses the wav on stdout).
"""

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from _helpers import require_tools, run, skip_or_fail
from espnet2.train.dataset import kaldi_loader

from espnet_plugins.data.import_corpora import CorpusError, import_common_voice, import_kaldi_dir
from espnet_plugins.data.kaldi import read_map, validate_data_dir

ROOT = Path(__file__).resolve().parents[1]
# The column header of Common Voice releases since v13 (client_id ... locale segment).
CV_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
             "age", "gender", "accents", "variant", "locale", "segment"]


def _speak(lang: str, text: str, out: Path, sox_out_args=()) -> None:
    """espeak-ng -> (sox conversion) -> ``out``; the format follows ``out``'s suffix."""
    require_tools("espeak-ng", "sox", why="synthesising the importer fixtures")
    raw = run(["espeak-ng", "-v", lang, "--stdout", text], capture_output=True, check=True, timeout=60).stdout
    res = run(["sox", "-V1", "-t", "wav", "-", *sox_out_args, str(out)], input=raw, capture_output=True, timeout=60)
    if res.returncode and out.suffix == ".mp3":
        skip_or_fail(f"this sox cannot write mp3 (no libsox-fmt-mp3): {res.stderr.decode(errors='replace')[-300:]}")
    res.check_returncode()


def _cv_row(client: str, clip: str, sentence: str, locale: str) -> str:
    fields = dict(client_id=client, path=clip, sentence_id="ab12", sentence=sentence, sentence_domain="",
                  up_votes="2", down_votes="0", age="", gender="", accents="", variant="", locale=locale,
                  segment="")
    return "\t".join(fields[c] for c in CV_HEADER) + "\n"


@pytest.fixture(scope="module")
def cv_root(tmp_path_factory):
    """Two languages, Common Voice layout, mp3 clips at 48 kHz stereo."""
    root = tmp_path_factory.mktemp("cv")
    rows = {
        "hi": [("c" * 128, "common_voice_hi_1.mp3", 'नमस्ते, "दुनिया"।'),
               ("d" * 128, "common_voice_hi_2.mp3", "भारत एक देश है"),
               ("d" * 128, "common_voice_hi_3.mp3", "।")],  # empty after normalisation: skipped
        "ta": [("e" * 128, "common_voice_ta_1.mp3", "வணக்கம் உலகம்")],
    }
    for lang, lang_rows in rows.items():
        (root / lang / "clips").mkdir(parents=True)
        lines = ["\t".join(CV_HEADER) + "\n"]
        for client, clip, sentence in lang_rows:
            _speak(lang, sentence, root / lang / "clips" / clip, ["-r", "48000", "-c", "2"])
            lines.append(_cv_row(client, clip, sentence, lang))
        (root / lang / "train.tsv").write_text("".join(lines), encoding="utf-8")
    return root


def _read_all(data_dir: Path) -> dict:
    """Every wav.scp entry through ESPnet's kaldi_ark loader: ``{utt: (rate, samples)}``."""
    loader = kaldi_loader(str(data_dir / "wav.scp"), allow_multi_rates=True)
    audio = {}
    for utt in read_map(data_dir / "wav.scp"):
        samples = loader[utt]
        audio[utt] = (loader.rate, samples)  # the loader records the rate of the last read
    return audio


def test_common_voice_import(cv_root, tmp_path):
    out = tmp_path / "cv_train"
    assert import_common_voice(cv_root, ["hi", "ta"], "train", out, lang_map={"ta": "tam"}) == 3
    validate_data_dir(out)
    text, utt2lang, utt2spk = (read_map(out / n) for n in ("text", "utt2lang", "utt2spk"))
    spk_c = hashlib.sha1(("c" * 128).encode()).hexdigest()[:12]
    assert text[f"{spk_c}-common_voice_hi_1"] == "नमस्ते दुनिया"  # punctuation and quotes removed
    assert all(re.fullmatch(r"[0-9a-f]{12}-common_voice_(hi|ta)_\d", u) for u in text)
    assert all(utt.startswith(spk + "-") for utt, spk in utt2spk.items())
    assert sorted(utt2lang.values()) == ["hi", "hi", "tam"]  # locale column, or the --lang_map override
    wav = read_map(out / "wav.scp")[f"{spk_c}-common_voice_hi_1"]
    assert wav == f"sox {cv_root / 'hi' / 'clips' / 'common_voice_hi_1.mp3'} -t wav -r 16000 -c 1 -b 16 - |"

    audio = _read_all(out)
    assert len(audio) == 3
    for utt, (rate, samples) in audio.items():
        assert rate == 16000 and samples.ndim == 1 and samples.dtype == np.int16 and len(samples) > 8000
    src = soundfile.info(cv_root / "hi" / "clips" / "common_voice_hi_1.mp3")
    assert (src.samplerate, src.channels, src.format) == (48000, 2, "MP3")

    assert import_common_voice(cv_root, ["hi"], "train", out, max_utts=1) == 1  # rerun replaces the dir
    assert len(read_map(out / "text")) == 1 and len(read_map(out / "utt2spk")) == 1


def test_common_voice_errors(cv_root, tmp_path):
    bad = tmp_path / "bad"
    (bad / "hi" / "clips").mkdir(parents=True)
    (bad / "hi" / "dev.tsv").write_text("path\tsentence\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"dev.tsv:1: header lacks column\(s\) client_id"):
        import_common_voice(bad, ["hi"], "dev", tmp_path / "o")
    (bad / "hi" / "dev.tsv").write_text("\t".join(CV_HEADER) + "\n" + _cv_row("x", "gone.mp3", "क", "hi"))
    with pytest.raises(CorpusError, match=r"dev.tsv:2: clip .*gone.mp3 does not exist"):
        import_common_voice(bad, ["hi"], "dev", tmp_path / "o")
    with pytest.raises(CorpusError, match=r"test.tsv: not found"):
        import_common_voice(cv_root, ["hi"], "test", tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_common_voice_cli(cv_root, tmp_path):
    proc = run(
        [sys.executable, str(ROOT / "local" / "data_prep" / "common_voice.py"), "--cv_root", str(cv_root),
         "--langs", "hi,ta", "--subset", "train", "--outdir", str(tmp_path / "d"), "--max_utts", "1"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(read_map(tmp_path / "d" / "utt2lang").values()) == ["hi", "ta"]


@pytest.fixture
def kaldi_src(tmp_path, monkeypatch):
    """A source dir with a 48 kHz stereo wav, an 8 kHz wav (relative path), a 16 kHz pipe."""
    audio = tmp_path / "audio"
    audio.mkdir()
    _speak("hi", "एक दो तीन", audio / "s48.wav", ["-r", "48000", "-c", "2"])
    _speak("hi", "चार पांच", audio / "s8.wav", ["-r", "8000", "-c", "1"])
    _speak("hi", "छह सात", audio / "s16.wav", ["-r", "16000", "-c", "1", "-b", "16"])
    src = tmp_path / "src"
    src.mkdir()
    (src / "wav.scp").write_text(  # unsorted on purpose: the import sorts
        f"spkB-u2 audio/s8.wav\nspkA-u1 {audio / 's48.wav'}\nspkA-u3 cat {audio / 's16.wav'} |\n")
    (src / "text").write_text("spkA-u1 एक, दो, तीन!\nspkB-u2 चार पांच\nspkA-u3 छह सात\n", encoding="utf-8")
    (src / "utt2spk").write_text("spkA-u1 spkA\nspkB-u2 spkB\nspkA-u3 spkA\n")
    monkeypatch.chdir(tmp_path)  # relative wav paths are taken from the cwd, as in Kaldi
    return src


def _snapshot(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_kaldi_import_resample(kaldi_src, tmp_path):
    before = _snapshot(kaldi_src)
    with pytest.raises(CorpusError, match=r"wav.scp:1: .*s8.wav is 8000 Hz with 1 channel\(s\).*--resample"):
        import_kaldi_dir(kaldi_src, tmp_path / "out", lang="hi")

    assert import_kaldi_dir(kaldi_src, tmp_path / "out", lang="hi", resample=True, prefix="x-") == 3
    out = tmp_path / "out"
    validate_data_dir(out)
    assert _snapshot(kaldi_src) == before  # the source is never modified
    assert list(read_map(out / "text")) == ["x-spkA-u1", "x-spkA-u3", "x-spkB-u2"]
    assert read_map(out / "text")["x-spkA-u1"] == "एक दो तीन"
    assert set(read_map(out / "utt2lang").values()) == {"hi"}
    assert read_map(out / "spk2utt") == {"x-spkA": "x-spkA-u1 x-spkA-u3", "x-spkB": "x-spkB-u2"}
    wav = read_map(out / "wav.scp")
    assert wav["x-spkB-u2"] == f"sox {tmp_path / 'audio' / 's8.wav'} -t wav -r 16000 -c 1 -b 16 - |"
    assert wav["x-spkA-u3"] == f"cat {tmp_path / 'audio' / 's16.wav'} | sox -V1 -t wav - -t wav -r 16000 -c 1 -b 16 - |"

    audio = _read_all(out)
    for utt, source in (("x-spkA-u1", "s48.wav"), ("x-spkB-u2", "s8.wav"), ("x-spkA-u3", "s16.wav")):
        rate, samples = audio[utt]
        info = soundfile.info(tmp_path / "audio" / source)
        assert rate == 16000 and samples.ndim == 1
        assert len(samples) == pytest.approx(info.duration * 16000, abs=16)  # same duration, new rate


def test_kaldi_import_segments_and_own_utt2lang(kaldi_src, tmp_path):
    (kaldi_src / "wav.scp").write_text(f"rec1 {kaldi_src.parent / 'audio' / 's48.wav'}\n")
    (kaldi_src / "segments").write_text("s-a rec1 0.0 0.5\ns-b rec1 0.5 -1\n")
    (kaldi_src / "text").write_text("s-a एक\ns-b दो three\n", encoding="utf-8")
    (kaldi_src / "utt2spk").write_text("s-a s\ns-b s\n")
    (kaldi_src / "utt2lang").write_text("s-a hi\ns-b hi  en\n")
    with pytest.raises(CorpusError, match="utt2lang exists and a language"):
        import_kaldi_dir(kaldi_src, tmp_path / "seg", lang="hi", resample=True)

    import_kaldi_dir(kaldi_src, tmp_path / "seg", resample=True)
    out = tmp_path / "seg"
    assert read_map(out / "utt2lang") == {"s-a": "hi", "s-b": "hi en"}  # code-switch label kept
    assert read_map(out / "wav.scp")["s-a"].endswith("-t wav -r 16000 -c 1 -b 16 - trim 0.0 =0.5 |")
    audio = _read_all(out)
    total = soundfile.info(kaldi_src.parent / "audio" / "s48.wav").duration
    assert len(audio["s-a"][1]) == 8000
    assert len(audio["s-b"][1]) == pytest.approx((total - 0.5) * 16000, abs=16)


def test_kaldi_import_errors(kaldi_src, tmp_path):
    with pytest.raises(CorpusError, match="has no utt2lang; give the language"):
        import_kaldi_dir(kaldi_src, tmp_path / "o", resample=True)
    (kaldi_src / "text").write_text("spkA-u1 a\nspkB-u2 b\nspkC-u9 c\n")
    with pytest.raises(CorpusError, match=r"src/text:3: utterance 'spkC-u9' is not in wav.scp"):
        import_kaldi_dir(kaldi_src, tmp_path / "o", lang="hi", resample=True)
    with pytest.raises(CorpusError, match="is \\(inside\\) the source"):
        import_kaldi_dir(kaldi_src, kaldi_src / "sub", lang="hi", resample=True)


def test_kaldi_import_cli(kaldi_src, tmp_path):
    cmd = [sys.executable, str(ROOT / "local" / "data_prep" / "import_kaldi_dir.py"), "--src", str(kaldi_src),
           "--outdir", str(tmp_path / "cli"), "--lang", "mr"]
    proc = run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "--resample" in proc.stderr and "wav.scp:" in proc.stderr
    proc = run(cmd + ["--resample"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert set(read_map(tmp_path / "cli" / "utt2lang").values()) == {"mr"}
