"""Real-corpus importers, downloads and archive extraction, on fixtures in the published
layouts (tests/_real_corpora.py) and a local HTTP server on 127.0.0.1 (no internet)."""
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import soundfile as sf
from _helpers import require_tools, run
from _real_corpora import LocalServer, make_fleurs, make_indicvoices, make_kathbath, make_mucs, serve_tree

from espnet_plugins.data.download import DownloadError, fetch_url, safe_extract
from espnet_plugins.data.import_corpora import CorpusError
from espnet_plugins.data.indic_corpora import (import_fleurs, import_indicvoices, import_kathbath, import_mucs,
                                               kathbath_archives)
from espnet_plugins.data.kaldi import read_map, validate_data_dir

REPO = Path(__file__).resolve().parents[1]
FAKE_TOKEN = "hf_FAKEtokenNeverLogged0123456789"


def _pipe_audio(entry: str):
    """Run a wav.scp pipe and read what it writes."""
    out = subprocess.run(entry.rstrip("|"), shell=True, capture_output=True, check=True, timeout=60).stdout
    x, fs = sf.read(io.BytesIO(out))
    return x, fs


@pytest.fixture(scope="module")
def kathbath(tmp_path_factory):
    require_tools("ffmpeg", why="Kathbath's m4a audio")
    root = tmp_path_factory.mktemp("kathbath")
    sizes = make_kathbath(root / "tree", root / "archives", sizes={"train": 2, "valid": 1, "test_known": 2, "test": 1})
    return root, sizes


def test_kathbath_import_clean_and_noisy(kathbath, tmp_path):
    root, sizes = kathbath
    n = import_kathbath(root / "tree", ["hi", "marathi"], "test_known", tmp_path / "kn")
    assert n == 2 * sizes["test_known"]
    d = tmp_path / "kn"
    validate_data_dir(d)
    wav, text, lang, spk = (read_map(d / f) for f in ("wav.scp", "text", "utt2lang", "utt2spk"))
    assert sorted(set(lang.values())) == ["hi", "mr"]
    trans = (root / "tree" / "kb_data_clean_m4a" / "hindi" / "test_known" / "transcription_n2w.txt").read_text()
    lines = [line.partition("\t") for line in trans.splitlines()]
    names = [name[:-4] for name, _, _ in lines]
    # speaker = the file name's middle field; the fixture gives each speaker two utterances
    utts = [f"kb-hi-{n.split('-')[1]}-{n}" for n in names]
    assert [spk[u] for u in utts] == [f"kb-hi-{names[0].split('-')[1]}"] * 2 and len(set(spk.values())) == 2
    assert text[utts[0]] == lines[0][2]
    assert all(wav[u].startswith("ffmpeg ") and wav[u].endswith("|") for u in utts)
    assert f"/audio/{names[0]}.m4a" in wav[utts[0]] and f"/audio/{names[1].split('-')[1]}/{names[1]}.m4a" in wav[utts[1]]
    entry = wav[utts[1]]  # the nested one
    x, fs = _pipe_audio(entry)
    assert fs == 16000 and x.ndim == 1 and 0.7 < len(x) / fs < 1.4
    # test_unknown is the release's "test" dir; the noisy sets come from kb_data_noisy_m4a
    assert import_kathbath(root / "tree", ["hi"], "test_unknown_noisy", tmp_path / "unk_noisy") == sizes["test"]
    assert "kb_data_noisy_m4a/hindi/test/audio/" in (tmp_path / "unk_noisy" / "wav.scp").read_text()
    with pytest.raises(CorpusError, match=r"kb_data_clean_m4a/<language>/<split>.*stage 0"):
        import_kathbath(tmp_path / "nowhere", ["hi"], "train", tmp_path / "x")
    with pytest.raises(CorpusError, match="no language 'xx'.*hi \\(hindi\\)"):
        import_kathbath(root / "tree", ["xx"], "train", tmp_path / "x")


def test_kathbath_archive_urls_are_espnets():
    urls = [u for u, _ in kathbath_archives(["train", "test_known_noisy"])]
    base = "https://indic-asr-public.objectstore.e2enetworks.net/indic-superb/kathbath"
    assert urls == [f"{base}/clean/train_audio.tar", f"{base}/clean/transcripts_n2w.tar",
                    f"{base}/noisy/testkn_audio.tar", f"{base}/noisy/transcripts_n2w.tar"]


def test_fleurs_import_from_the_hub_layout(tmp_path):
    repo = tmp_path / "fleurs"
    sizes = make_fleurs(repo, langs=("hi",), sizes={"test": 3})
    safe_extract(repo / "data" / "hi_in" / "audio" / "test.tar.gz", repo / "data" / "hi_in" / "audio")
    assert import_fleurs(repo, ["hi_in"], "test", tmp_path / "t") == sizes["test"]
    wav, text = read_map(tmp_path / "t" / "wav.scp"), read_map(tmp_path / "t" / "text")
    row = (repo / "data" / "hi_in" / "test.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    utt = f"fleurs-hi-{Path(row[1]).stem}"
    assert row[2].endswith("।") and text[utt] == row[2].rstrip("।")  # raw transcription, normalised
    assert wav[utt] == str(repo / "data" / "hi_in" / "audio" / "test" / row[1])  # 16 kHz wav: used in place
    with pytest.raises(CorpusError, match="google/fleurs.*stage 0"):
        import_fleurs(repo, ["mr"], "test", tmp_path / "x")


def test_indicvoices_import_writes_the_embedded_audio_once(tmp_path):
    import pyarrow.parquet as pq

    repo = tmp_path / "iv"
    make_indicvoices(repo, langs=("hi",), sizes={"valid": 4})
    out, audio = tmp_path / "t", tmp_path / "audio"
    assert import_indicvoices(repo, ["hi"], "valid", out, audio) == 4
    rows = pq.read_table(repo / "hindi" / "valid-00000-of-00001.parquet").to_pylist()
    wav, text, spk = (read_map(out / f) for f in ("wav.scp", "text", "utt2spk"))
    for r in rows:
        utt = f"iv-hi-{r['speaker_id']}-{Path(r['audio_filepath']['path']).stem}"
        assert Path(wav[utt]).read_bytes() == r["audio_filepath"]["bytes"]  # unchanged FLAC
        assert text[utt] == r["text"] and spk[utt] == f"iv-hi-{r['speaker_id']}"
    mtimes = {p: p.stat().st_mtime_ns for p in audio.rglob("*.flac")}
    import_indicvoices(repo, ["hi"], "valid", out, audio)
    assert {p: p.stat().st_mtime_ns for p in audio.rglob("*.flac")} == mtimes  # not rewritten
    with pytest.raises(CorpusError, match="no column.*transcript"):
        import_indicvoices(repo, ["hi"], "valid", out, audio, text_column="transcript")
    with pytest.raises(CorpusError, match="gated.*huggingface.co/datasets/ai4bharat/IndicVoices"):
        import_indicvoices(repo, ["mr"], "valid", out, audio)


def test_mucs_import_upsamples_8khz(tmp_path):
    root = tmp_path / "mucs"
    make_mucs(root, langs=("mr",), sizes={"test": 2})
    assert import_mucs(root, ["mr"], "test", tmp_path / "t") == 2
    entry = read_map(tmp_path / "t" / "wav.scp")["mucs-mr-MRte0000"]
    assert entry.startswith("sox ") and "-r 16000" in entry
    x, fs = _pipe_audio(entry)
    assert fs == 16000
    with pytest.raises(CorpusError, match="navana-tech.github.io/MUCS2021"):
        import_mucs(tmp_path / "absent", ["mr"], "test", tmp_path / "x")


# --- downloads ------------------------------------------------------------------------------
BODY = bytes(range(256)) * 4000  # ~1 MB


def test_fetch_resumes_a_killed_download_and_skips_a_complete_file(tmp_path, caplog):
    caplog.set_level("INFO", logger="espnet_plugins.data.download")
    with LocalServer({"/a.tar": BODY}) as srv:
        dest = tmp_path / "a.tar"
        (tmp_path / "a.tar.part").write_bytes(BODY[:300_000])  # what a killed run left
        fetch_url(f"{srv.url}/a.tar", dest, sha256=hashlib.sha256(BODY).hexdigest())
        assert dest.read_bytes() == BODY and not (tmp_path / "a.tar.part").exists()
        assert [h.get("Range") for m, p, h in srv.requests] == ["bytes=300000-"]
        progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("a.tar: ")]
        pcts = [int(m.rsplit("(", 1)[1].split()[0]) for m in progress]
        assert pcts[0] >= 30 and pcts[-1] == 100 and pcts == sorted(pcts) and len(pcts) <= 8, progress  # one line per 10 % step
        fetch_url(f"{srv.url}/a.tar", dest)
        assert len(srv.requests) == 1  # complete: no request


def test_fetch_resumes_after_a_dropped_connection(tmp_path):
    with LocalServer({"/b.tar": BODY}) as srv:
        srv.drop_once.add("/b.tar")
        fetch_url(f"{srv.url}/b.tar", tmp_path / "b.tar", size=len(BODY))
        assert (tmp_path / "b.tar").read_bytes() == BODY
        ranges = [h.get("Range") for m, p, h in srv.requests]
        assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0


def test_fetch_checksum_mismatch_keeps_nothing_and_404_names_the_url(tmp_path):
    with LocalServer({"/c.tar": BODY}) as srv:
        srv.corrupt.add("/c.tar")
        with pytest.raises(DownloadError, match=rf"{srv.url}/c.tar: checksum mismatch.*removed"):
            fetch_url(f"{srv.url}/c.tar", tmp_path / "c.tar", sha256=hashlib.sha256(BODY).hexdigest())
        assert list(tmp_path.iterdir()) == []
        with pytest.raises(DownloadError, match=rf"{srv.url}/missing.tar: not found \(HTTP 404\).*by hand"):
            fetch_url(f"{srv.url}/missing.tar", tmp_path / "m.tar")
        assert list(tmp_path.iterdir()) == []


def _tar_with(path: Path, members: dict) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, str):  # a symlink to data
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_safe_extract_keeps_every_member_inside(tmp_path):
    dest = tmp_path / "out"
    bad = _tar_with(tmp_path / "dotdot.tar", {"ok.txt": b"ok", "../evil.txt": b"x"})
    with pytest.raises(DownloadError, match=r"dotdot.tar: refusing to extract member '../evil.txt'"):
        safe_extract(bad, dest)
    assert not (tmp_path / "evil.txt").exists() and not (dest / ".dotdot.tar.extracted").exists()
    link = _tar_with(tmp_path / "link.tar", {"l": str(tmp_path), "l/evil2.txt": b"x"})
    with pytest.raises(DownloadError, match="refusing to extract"):
        safe_extract(link, dest)
    assert not (tmp_path / "evil2.txt").exists()
    absolute = _tar_with(tmp_path / "abs.tar", {str(tmp_path / "evil3.txt"): b"x", "a/b.txt": b"b"})
    safe_extract(absolute, dest)  # the data filter strips the leading '/': it lands inside dest
    assert not (tmp_path / "evil3.txt").exists()
    assert (dest / str(tmp_path / "evil3.txt").lstrip("/")).read_bytes() == b"x"
    assert (dest / "a" / "b.txt").read_bytes() == b"b" and (dest / ".abs.tar.extracted").is_file()


def _download_cli(args, env):
    return run([sys.executable, str(REPO / "local" / "data_prep" / "download.py"), *args], capture_output=True,
               text=True, timeout=300, env=env)


def test_hub_downloads_use_the_token_without_showing_it(tmp_path):
    """FLEURS and gated IndicVoices through huggingface_hub against a local hub."""
    repo = tmp_path / "fleurs_src"
    make_fleurs(repo, langs=("hi",), sizes={"dev": 2})
    iv = tmp_path / "iv_src"
    make_indicvoices(iv, langs=("hi",), sizes={"valid": 2})
    files = {k: v for k, v in serve_tree(repo, "/datasets/google/fleurs/resolve/main").items() if "_unpacked" not in k}
    files.update(serve_tree(iv, "/datasets/ai4bharat/IndicVoices/resolve/main"))
    with LocalServer(files, token=FAKE_TOKEN, gated=("/datasets/ai4bharat/", "/api/datasets/ai4bharat/")) as srv:
        env = {**os.environ, "HF_ENDPOINT": srv.url, "HF_HOME": str(tmp_path / "hf_home"), "HF_TOKEN": FAKE_TOKEN}
        res = _download_cli(["fleurs", "--dir", str(tmp_path / "fl"), "--langs", "hi_in", "--subsets", "dev"], env)
        assert res.returncode == 0, res.stderr
        assert sorted(p.name for p in (tmp_path / "fl" / "data" / "hi_in" / "audio" / "dev").iterdir()) == \
            sorted(p.name for p in (repo / "_unpacked" / "hi_in" / "dev").iterdir())
        n = len(srv.requests)  # a rerun: every file verified, no request
        rerun = _download_cli(["fleurs", "--dir", str(tmp_path / "fl"), "--langs", "hi_in", "--subsets", "dev"], env)
        assert rerun.returncode == 0 and len(srv.requests) == n, srv.requests[n:]
        res2 = _download_cli(["indicvoices", "--dir", str(tmp_path / "ivd"), "--langs", "hi", "--subsets", "valid"], env)
        assert res2.returncode == 0, res2.stderr
        assert (tmp_path / "ivd" / "hindi" / "valid-00000-of-00001.parquet").read_bytes() == \
            (iv / "hindi" / "valid-00000-of-00001.parquet").read_bytes()
        assert any(h.get("authorization") == f"Bearer {FAKE_TOKEN}" for _, p, h in srv.requests if "ai4bharat" in p)
        # without a token: the gated repo's error says what to do
        no_token = {k: v for k, v in env.items() if k != "HF_TOKEN"}
        res3 = _download_cli(["indicvoices", "--dir", str(tmp_path / "ivn"), "--langs", "hi", "--subsets", "valid"],
                             no_token)
        assert res3.returncode == 1 and "gated" in res3.stderr and "hf auth login" in res3.stderr
        # a corrupted file: the hub's sha256 does not match, nothing is kept
        srv.corrupt.add("/datasets/google/fleurs/resolve/main/data/hi_in/dev.tsv")
        res4 = _download_cli(["fleurs", "--dir", str(tmp_path / "fl2"), "--langs", "hi_in", "--subsets", "dev"], env)
        assert res4.returncode == 1 and "data/hi_in/dev.tsv: checksum mismatch" in res4.stderr
        assert not (tmp_path / "fl2" / "data" / "hi_in" / "dev.tsv").exists()
    for out in (res, res2, res3, res4):
        assert FAKE_TOKEN not in out.stdout + out.stderr
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and "hf_home" not in p.parts
              and FAKE_TOKEN.encode() in p.read_bytes()]
    assert leaked == []


def test_score_indic_norm_option(tmp_path):
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.mkdir()
    hyp.mkdir()
    (ref / "text").write_text("u1 ॲप घर\n", encoding="utf-8")  # U+0972; IndicNLP's Devanagari normaliser maps it
    (ref / "utt2lang").write_text("u1 hi\n")
    (hyp / "text").write_text("u1 एप घर\n", encoding="utf-8")
    sys.path.insert(0, str(REPO / "local"))
    import score

    plain = score.score_test_set("t", ref, hyp)
    indic = score.score_test_set("t", ref, hyp, indic_norm=True)
    assert (plain.total.chars.errors, plain.total.words.errors) == (1, 1)
    assert (indic.total.chars.errors, indic.total.words.errors) == (0, 0)


def test_common_voice_absent_names_its_download_page(tmp_path):
    from espnet_plugins.data.import_corpora import import_common_voice

    with pytest.raises(CorpusError, match="commonvoice.mozilla.org/datasets"):
        import_common_voice(tmp_path / "absent", ["hi"], "test", tmp_path / "out")
