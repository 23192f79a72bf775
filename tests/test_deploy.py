"""Deployable models (issue 36): the packed zip of run.sh stage 11 decodes from an empty
directory in a new process, ``from_pretrained`` loads a zip, a directory and a hub repo
id, stage 13 uploads the model with its card, and the user's environment decides
online/offline.

The model is the mini recipe's (``mini_run`` in conftest.py: trained once per session).
It is only trained for 2 epochs, so its greedy hypotheses may be empty: besides the
hypotheses, the CTC log-probabilities of the unpacked model must equal the recipe
model's (max |diff| <= 1e-5), which no wrong file (stats, tokens, weights) survives.
The hub is a local stand-in on 127.0.0.1 (tests/_hub_server.py); nothing uses the internet.
"""
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from _deploy_decode import decode
from _helpers import run
from _hub_server import HubServer

from espnet_plugins.deploy.pretrained import sha256_file

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "indic_synth" / "asr1"
FAKE_TOKEN = "hf_FAKEtok3nThatMustNeverBeWrittenAnywhere"
N_UTTS = 4

def _lines(path):
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TRANSFORMERS_OFFLINE"}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return env


def _decode(specs, scp, workdir: Path, **env):
    """tests/_deploy_decode.py in a new process whose working directory is an empty dir
    ``workdir``: [(texts, log-probs)] per model spec."""
    workdir.mkdir(parents=True, exist_ok=True)
    res = run([sys.executable, str(ROOT / "tests" / "_deploy_decode.py"), str(scp), str(N_UTTS), str(workdir / "out"),
               *specs], cwd=workdir, capture_output=True, text=True, timeout=600, env=_env(**env))
    assert res.returncode == 0, f"decoding {specs} failed:\n{res.stderr[-3000:]}"
    return [(json.loads((workdir / f"out.{i}.json").read_text()), dict(np.load(workdir / f"out.{i}.npz")))
            for i in range(len(specs))]


@pytest.fixture(scope="module")
def recipe_model(mini_run):
    """The recipe model's hypotheses (stage 8) and log-probs on the first test_id utterances."""
    tmp, _ = mini_run
    exp = tmp / "exp" / "asr_mini"
    scp = tmp / "dump" / "raw" / "test_id" / "wav.scp"
    texts, logps = decode(str(exp), str(scp), N_UTTS)  # the exp dir itself, as a model dir
    stage8 = dict((line.split(maxsplit=1) + [""])[:2] for line in _lines(exp / "decode_ctc_greedy" / "test_id" / "text"))
    assert texts == {utt: stage8[utt] for utt in texts}, "from_pretrained(exp dir) differs from stage 8's decoding"
    return exp, scp, texts, logps


def _assert_same(reference, texts, logps):
    _, _, ref_texts, ref_logps = reference
    assert texts == ref_texts
    assert logps.keys() == ref_logps.keys() and len(logps) == N_UTTS
    for utt, lp in logps.items():
        assert lp.shape == ref_logps[utt].shape and float(np.abs(lp - ref_logps[utt]).max()) <= 1e-5, utt


def test_packed_zip_holds_everything_the_config_names(recipe_model):
    exp = recipe_model[0]
    with zipfile.ZipFile(exp / "packed.zip") as z:
        names = set(z.namelist())
        config = yaml.safe_load(z.read("config.yaml"))
        meta = yaml.safe_load(z.read("meta.yaml"))
    assert {"meta.yaml", "config.yaml", "model.pth", "feats_stats.npz", "RESULTS.md"} <= names
    assert meta["files"] == {"asr_model_file": "model.pth"} and meta["yaml_files"] == {"asr_train_config": "config.yaml"}
    assert config["normalize_conf"]["stats_file"] == "feats_stats.npz"
    assert config["lang_list"] == ["hi", "mr", "ta", "te"] and config["token_list"][0] == "<blank>"


def test_packed_zip_decodes_from_an_empty_dir_in_a_new_process(recipe_model, tmp_path):
    """The zip alone, copied to an empty directory: from_pretrained(zip) and ESPnet's own
    unpack give the recipe model's hypotheses and log-probs, with the recipe's feature
    statistics moved away (so nothing is read from the recipe's directories)."""
    exp, scp = recipe_model[0], recipe_model[1]
    away = tmp_path / "elsewhere"
    away.mkdir()
    (away / "model.zip").write_bytes((exp / "packed.zip").read_bytes())
    stats = exp.parent / "asr_stats_char"
    hidden = stats.with_name("asr_stats_char.hidden")
    stats.rename(hidden)
    try:
        cache = tmp_path / "cache"
        # the zip, ESPnet's own unpack of it, and the unpacked directory (from_pretrained's
        # cache, made by the first) as a model dir of its own
        unpacked = cache / f"model-{sha256_file(away / 'model.zip')[:16]}"
        for decoded in _decode([str(away / "model.zip"), f"espnet_unpack:{away / 'model.zip'}", str(unpacked)],
                               scp, away / "a", ESPNET_PLUGINS_CACHE=str(cache)):
            _assert_same(recipe_model, *decoded)
        # the CLI: asr_inference --model_tag <zip>
        keys = away / "keys"
        keys.write_text("".join(line.split()[0] + "\n" for line in _lines(scp)[:N_UTTS]))
        res = run([sys.executable, "-m", "espnet_plugins.bin.asr_inference", "--model_tag", str(away / "model.zip"),
                   "--data_path_and_name_and_type", f"{scp},speech,sound", "--key_file", str(keys),
                   "--output_dir", str(away / "cli")], cwd=away, capture_output=True, text=True, timeout=300,
                  env=_env(ESPNET_PLUGINS_CACHE=str(cache)))
        assert res.returncode == 0, res.stderr[-3000:]
        cli = dict((line.split(maxsplit=1) + [""])[:2] for line in _lines(away / "cli" / "text"))
        assert cli == recipe_model[2]
    finally:
        hidden.rename(stats)


def test_onnx_bundle_decodes_from_an_empty_dir(recipe_model, tmp_path):
    """Stage 12's model.onnx + tokens.txt, copied to an empty dir, decode (ONNX Runtime,
    no torch) to the recipe model's hypotheses."""
    exp, scp = recipe_model[0], recipe_model[1]
    for name in ("model.onnx", "tokens.txt"):
        (tmp_path / name).write_bytes((exp / "onnx" / name).read_bytes())
    short = tmp_path / "wav.scp"
    short.write_text("".join(line + "\n" for line in _lines(scp)[:N_UTTS]), encoding="utf-8")
    res = run([sys.executable, "-m", "espnet_plugins.inference.onnx_decode", "--model", "model.onnx",
               "--wav_scp", str(short), "--output", "text"], cwd=tmp_path, capture_output=True, text=True,
              timeout=300, env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    onnx = dict((line.split(maxsplit=1) + [""])[:2] for line in _lines(tmp_path / "text"))
    assert onnx == recipe_model[2]


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def uploaded(mini_run, recipe_model, hub, tmp_path_factory):
    """run.sh stage 13 against the stand-in hub, token from HF_TOKEN: (repo id, run.sh output)."""
    tmp, _ = mini_run
    home = tmp_path_factory.mktemp("hf_home_upload")
    cmd = ["./run.sh", "--mini", "true", "--datadir", f"{tmp}/data", "--dumpdir", f"{tmp}/dump",
           "--expdir", f"{tmp}/exp", "--stage", "13", "--stop_stage", "13", "--hf_repo", "me/mini-asr"]
    res = run(cmd, cwd=RECIPE, capture_output=True, text=True, timeout=300,
              env=_env(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_TOKEN=FAKE_TOKEN, HF_HOME=str(home)))
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return "me/mini-asr", res.stdout + res.stderr


def test_upload_stage_sends_the_model_and_its_card(uploaded, hub, mini_run, recipe_model):
    repo_id, log = uploaded
    files = hub.repos[repo_id]["files"]
    with zipfile.ZipFile(recipe_model[0] / "packed.zip") as z:
        for name in z.namelist():  # the packed model, file for file
            assert files[name] == z.read(name), name
    for name in ("onnx/model.onnx", "onnx/tokens.txt", "sherpa_onnx/model.onnx", "sherpa_onnx/tokens.txt"):
        assert files[name] == (recipe_model[0] / name).read_bytes(), name  # stage 12's exports ride along
    card = files["README.md"].decode("utf-8")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["language"] == ["hi", "mr", "ta", "te"] and front["library_name"] == "espnet"
    # the card renders this model's RESULTS.md section: its test_id row and its command
    results = (mini_run[0] / "exp" / "RESULTS.md").read_text(encoding="utf-8")
    section = results.split("<!-- local/score.py section begin: mini / ctc_greedy -->")[1].split("section end")[0]
    test_id_row = next(line for line in section.splitlines() if line.startswith("|test_id|"))
    assert test_id_row in card
    assert "- command (in `egs/indic_synth/asr1`): `./run.sh --mini true" in card
    assert "espeak-ng voices (GPL-3.0-or-later)" in card and "encoder: conformer" in card
    assert "uploading" in log and f"uploaded {len(files)} files" in log
    posts = [r for r in hub.requests if r["method"] == "POST"]
    assert [r["path"].split("/")[-2] if "models" in r["path"] else r["path"] for r in posts] == [
        "/api/repos/create", "/api/validate-yaml", "preupload", "commit"]
    assert all(r["headers"].get("authorization") == f"Bearer {FAKE_TOKEN}" for r in posts)


def test_the_token_is_written_nowhere(uploaded, mini_run):
    """HF_TOKEN reaches the hub (Authorization header) but no output: run.sh's output,
    any file under exp/ (logs, card, zip, upload folder). There is no option for it."""
    repo_id, log = uploaded
    assert FAKE_TOKEN not in log
    exp = mini_run[0] / "exp"
    checked = 0
    for path in exp.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path
            checked += 1
    assert checked > 20 and (exp / "asr_mini" / "hf_upload" / "README.md").is_file()
    res = run(["./run.sh", "--mini", "true", "--stage", "13", "--hf_token", "x"], cwd=RECIPE, capture_output=True,
              text=True, timeout=60)
    assert res.returncode != 0 and "unknown option --hf_token" in res.stderr


def test_from_pretrained_hub_repo_honours_the_users_offline_setting(uploaded, hub, recipe_model, tmp_path):
    """Online (HF_HUB_OFFLINE=0): downloaded from the stand-in hub into the user's HF_HOME
    and decoded as the recipe model; then offline (HF_HUB_OFFLINE=1, the server unknown):
    loaded from that cache; with no HF_HUB_OFFLINE set, our default is offline and the error
    says how to go online."""
    repo_id, _ = uploaded
    home = tmp_path / "hf_home"
    _assert_same(recipe_model, *_decode([repo_id], recipe_model[1], tmp_path / "online",
                                        HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(home))[0])
    assert any(r["path"].startswith(f"/{repo_id}/resolve/") for r in hub.requests)
    assert list((home / "hub").glob("models--me--mini-asr/snapshots/*/model.pth"))
    _assert_same(recipe_model, *_decode([repo_id], recipe_model[1], tmp_path / "offline",
                                        HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="1", HF_HOME=str(home))[0])
    probe = ("import os, espnet_plugins; from espnet_plugins.deploy.pretrained import model_dir_of\n"
             "print(os.environ['HF_HUB_OFFLINE'])\n"
             "try:\n    model_dir_of('me/mini-asr')\nexcept FileNotFoundError as e:\n    print(e)\n")
    res = run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
              env=_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "empty_home")))
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("1\n") and "export HF_HUB_OFFLINE=0 to download" in res.stdout


def test_activate_sh_offline_flags_are_defaults():
    script = ". tools/activate.sh && echo $HF_HUB_OFFLINE $TRANSFORMERS_OFFLINE $HF_DATASETS_OFFLINE"
    user = run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
               env=_env(HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0"))
    default = run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env())
    assert user.stdout.split() == ["0", "0", "1"] and default.stdout.split() == ["1", "1", "1"]


def test_pack_and_localize_a_frozen_encoder_config(tmp_path):
    """A frozen-encoder model: the base model's config and its stats go in under base/, the
    base checkpoint does not (its weights are in the parent's); unpacked elsewhere, every
    path resolves under the new directory."""
    from espnet_plugins.deploy.pack import localize_config, model_files, pack_model, unpack_zip

    run_dir = tmp_path / "recipe"
    (run_dir / "exp" / "base").mkdir(parents=True)
    (run_dir / "exp" / "stats.npz").write_bytes(b"parent stats")
    (run_dir / "exp" / "base" / "stats.npz").write_bytes(b"base stats")
    (run_dir / "exp" / "base" / "model.pth").write_bytes(b"base weights")
    (run_dir / "bpe.model").write_bytes(b"sentencepiece")
    (run_dir / "exp" / "base" / "config.yaml").write_text(yaml.safe_dump(
        {"frontend": "default", "normalize_conf": {"stats_file": "exp/base/stats.npz"}, "token_list": ["<blank>"]}))
    (run_dir / "exp" / "config.yaml").write_text(yaml.safe_dump({
        "frontend": "frozen_encoder",
        "frontend_conf": {"asr_train_config": "exp/base/config.yaml", "asr_model_file": "exp/base/model.pth"},
        "normalize_conf": {"stats_file": "exp/stats.npz"}, "bpemodel": "bpe.model", "token_list": ["<blank>"],
        "train_data_path_and_name_and_type": [["exp/stats.npz", "speech", "sound"]]}))
    (run_dir / "exp" / "model.pth").write_bytes(b"parent weights")
    packed = pack_model(run_dir / "exp" / "config.yaml", run_dir / "exp" / "model.pth", tmp_path / "p.zip",
                        base_dir=run_dir)
    assert set(packed) == {"config.yaml", "model.pth", "feats_stats.npz", "bpe.model", "base/config.yaml",
                           "base/feats_stats.npz"}
    with zipfile.ZipFile(tmp_path / "p.zip") as z:
        config = yaml.safe_load(z.read("config.yaml"))
        assert z.read("base/feats_stats.npz") == b"base stats" and z.read("model.pth") == b"parent weights"
    assert config["frontend_conf"] == {"asr_train_config": "base/config.yaml", "asr_model_file": None}
    assert config["normalize_conf"]["stats_file"] == "feats_stats.npz" and config["bpemodel"] == "bpe.model"
    unpacked = unpack_zip(tmp_path / "p.zip", tmp_path / "elsewhere" / "model")
    files = model_files(unpacked)
    local = yaml.safe_load(localize_config(files["asr_train_config"], tmp_path / "cfg.yaml", unpacked).read_text())
    assert local["normalize_conf"]["stats_file"] == str((unpacked / "feats_stats.npz").resolve())
    assert local["bpemodel"] == str((unpacked / "bpe.model").resolve())
    base = yaml.safe_load(Path(local["frontend_conf"]["asr_train_config"]).read_text())
    assert base["normalize_conf"]["stats_file"] == str((unpacked / "base" / "feats_stats.npz").resolve())
    # a file the config names but that is missing is an error naming the key
    (run_dir / "bpe.model").unlink()
    with pytest.raises(FileNotFoundError, match="bpemodel names bpe.model"):
        pack_model(run_dir / "exp" / "config.yaml", run_dir / "exp" / "model.pth", tmp_path / "q.zip", base_dir=run_dir)
