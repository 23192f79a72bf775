"""Integration: egs/indic_real/asr1/run.sh from download to scoring on format-exact fixtures.

Kathbath's archives and the hub (FLEURS, gated IndicVoices) are served from 127.0.0.1;
MUCS 2021 is a local dir.  Stage 0 downloads, stage 1 imports, stages 2-9 (shared with
egs/indic_synth) train the mini model and score every test split per language, plainly
and IndicNLP-normalised.  A fake hub token is in the environment the whole time and must
appear nowhere: not in the output, not in any file the run wrote.
"""
import json
import os
from pathlib import Path

import pytest
from _helpers import require_tools, run
from _real_corpora import LocalServer, make_fleurs, make_indicvoices, make_kathbath, make_mucs, serve_tree

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "indic_real" / "asr1"
FAKE_TOKEN = "hf_FAKEtokenForTheRecipe9876543210"
TEST_SETS = ["test_fleurs", "test_indicvoices", "test_kathbath_known", "test_kathbath_known_noisy",
             "test_kathbath_unknown", "test_kathbath_unknown_noisy", "test_mucs"]


def _run(cmd, env, timeout=1200):
    res = run(cmd, cwd=RECIPE, capture_output=True, text=True, timeout=timeout, env=env)
    return res, res.stdout + res.stderr


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    require_tools("ffmpeg", "sox", why="Kathbath's m4a audio and the format stage")
    tmp = tmp_path_factory.mktemp("real")
    src = tmp / "sources"
    make_kathbath(src / "kb_tree", src / "kb_archives", sizes={"train": 4, "valid": 1, "test_known": 1, "test": 1})
    make_fleurs(src / "fleurs", sizes={"train": 2, "dev": 1, "test": 1})
    make_indicvoices(src / "iv", sizes={"train": 2, "valid": 1})
    make_mucs(src / "mucs", sizes={"train": 2, "test": 1})
    files = serve_tree(src / "kb_archives", "/kathbath")
    files.update({k: v for k, v in serve_tree(src / "fleurs", "/datasets/google/fleurs/resolve/main").items()
                  if "_unpacked" not in k})
    files.update(serve_tree(src / "iv", "/datasets/ai4bharat/IndicVoices/resolve/main"))
    work = tmp / "work"
    with LocalServer(files, token=FAKE_TOKEN, gated=("/datasets/ai4bharat/", "/api/datasets/ai4bharat/")) as srv:
        env = {**os.environ, "HF_ENDPOINT": srv.url, "HF_HOME": str(tmp / "hf_home"), "HF_TOKEN": FAKE_TOKEN,
               "OMP_NUM_THREADS": "1"}
        common = ["--corpora", "kathbath,fleurs,indicvoices,mucs", "--langs", "hi,mr", "--mucs_root",
                  str(src / "mucs"), "--kathbath_url", f"{srv.url}/kathbath", "--download_dir", f"{work}/downloads",
                  "--datadir", f"{work}/data", "--dumpdir", f"{work}/dump", "--expdir", f"{work}/exp", "--nj", "2"]
        res, log = _run(["./run.sh", *common, "--stop_stage", "9", "--train_config", "train_mini.yaml",
                         "--tag", "mini", "--indic_norm", "true"], env)
        assert res.returncode == 0, f"run.sh failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        n_before = len(srv.requests)
        res2, log2 = _run(["./run.sh", *common, "--stop_stage", "1"], env, timeout=600)
        assert res2.returncode == 0, f"{res2.stdout[-3000:]}\n{res2.stderr[-3000:]}"
        rerun_requests = srv.requests[n_before:]
    return tmp, work, log, log2, rerun_requests


def test_every_test_split_is_scored_per_language(real_run):
    _, work, log, _, _ = real_run
    decode = work / "exp" / "asr_mini" / "decode_ctc_greedy"
    assert sorted(p.name for p in (work / "data").glob("test_*")) == TEST_SETS
    for name in ("scores.json", "scores_indicnlp.json"):
        scores = json.loads((decode / name).read_text())
        text = json.dumps(scores)
        for s in TEST_SETS:
            assert f'"{s}"' in text, (name, s)
    for s in TEST_SETS:  # every utterance of every split decoded once
        ref = sorted(line.split()[0] for line in (work / "dump" / "raw" / s / "wav.scp").read_text().splitlines())
        hyp = sorted(line.split()[0] for line in (decode / s / "text").read_text().splitlines())
        assert hyp == ref and len(ref) == 2  # one utterance per language
    results = (work / "exp" / "RESULTS.md").read_text()
    assert "mini / ctc_greedy / indicnlp" in results and "IndicNLP-normalised" in results
    assert "|test_kathbath_unknown_noisy|" in results
    assert (work / "data" / "lang_list").read_text().split() == ["hi", "mr"]
    # train = union of the corpora's train sets (MUCS and IndicVoices have no dev set)
    train_ids = [line.split()[0] for line in (work / "data" / "train" / "utt2spk").read_text().splitlines()]
    assert len(train_ids) == 2 * (4 + 2 + 2 + 2)
    for corpus in ("kb", "fleurs", "iv", "mucs"):
        for lang in ("hi", "mr"):
            assert any(u.startswith(f"{corpus}-{lang}-") for u in train_ids), (corpus, lang)
    dev_ids = [line.split()[0] for line in (work / "data" / "dev" / "utt2spk").read_text().splitlines()]
    assert sorted(u.split("-")[0] for u in dev_ids) == ["fleurs", "fleurs", "kb", "kb"]


def test_rerun_of_stages_0_1_skips_finished_work(real_run):
    _, _, _, log2, rerun_requests = real_run
    assert "already downloaded and extracted, skipping" in log2
    assert log2.count("exists (same options), skipping") == 13  # every imported set
    assert not [p for m, p, _ in rerun_requests if m == "GET" and p.startswith("/kathbath/")]


def test_the_hub_token_appears_nowhere(real_run):
    tmp, work, log, log2, _ = real_run
    assert FAKE_TOKEN not in log + log2
    leaked = [str(p) for p in work.rglob("*") if p.is_file() and FAKE_TOKEN.encode() in p.read_bytes()]
    assert leaked == []


def test_manual_corpora_name_their_download_page(tmp_path):
    env = {**os.environ}
    for corpus, page in (("commonvoice", "commonvoice.mozilla.org"), ("mucs", "navana-tech.github.io/MUCS2021")):
        res, log = _run(["./run.sh", "--corpora", corpus, "--stop_stage", "0", "--download_dir", str(tmp_path),
                         "--datadir", str(tmp_path / "data")], env, timeout=60)
        assert res.returncode == 1 and page in log, log


def test_an_unknown_option_fails_before_any_download(tmp_path):
    res, log = _run(["./run.sh", "--corpora", "kathbath", "--kathbath_url", "http://127.0.0.1:9/none", "--download_dir",
                     str(tmp_path), "--ngpu", "1", "--bogus_option", "1"], dict(os.environ), timeout=60)
    assert res.returncode == 1 and "unknown option --bogus_option" in log and "Kathbath:" not in log
    assert list(tmp_path.iterdir()) == []
