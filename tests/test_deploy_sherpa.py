"""sherpa-onnx export (issue 36): files that sherpa-onnx's own OfflineRecognizer runs, with
the PyTorch model's hypotheses.

1. run.sh stage 12's export of the mini recipe model (conftest ``mini_run``), copied to an
   empty directory, decoded by the ``sherpa-onnx`` package in a new process: CER on
   test_id within 0.1 point of stage 8's PyTorch decoding.
2. The mini model is trained for 2 epochs only and may emit nothing but blanks, so the
   same comparison runs on a model that emits tokens: a BLR-MoE of the mini preset with
   random weights (experts perturbed apart, as in test_export.py), exported pruned to
   hi,mr, against ``Speech2Text`` with the hard prior hi,mr, on the mini corpus' test_id
   audio at the corpus level (-1 dBFS peak). sherpa-onnx removes each waveform's mean
   and variance before the model (the graph restores the level, not the mean), so the
   comparison uses the audio with its mean removed: then the hypotheses are identical.
   (With the mean, the espeak audio's small DC offset changes the lowest 3 mel bins; a
   random model's near-tied outputs then differ on ~5 % of the characters.)
"""
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from _helpers import run

from espnet_plugins.asr.moe.expert_linear import ExpertLinear
from espnet_plugins.export.sherpa_export import export_sherpa_onnx, sherpa_tokens
from espnet_plugins.inference.speech2text import Speech2Text
from espnet_plugins.tasks.asr import MoEASRTask

ROOT = Path(__file__).resolve().parents[1]


def _lines(path):
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _kaldi_text(path):
    return dict((line.split(maxsplit=1) + [""])[:2] for line in _lines(path))


def _cer(refs, hyps):
    keys = sorted(refs)
    r = [refs[k].replace(" ", "_") or "_" for k in keys]
    return 100 * jiwer.cer(r, [hyps[k].replace(" ", "_") for k in keys])


def test_stage12_sherpa_export_decodes_from_an_empty_dir_like_pytorch(mini_run, tmp_path):
    tmp, _ = mini_run
    exp = tmp / "exp" / "asr_mini"
    away = tmp_path / "elsewhere"
    away.mkdir()
    for name in ("model.onnx", "tokens.txt"):
        (away / name).write_bytes((exp / "sherpa_onnx" / name).read_bytes())
    scp = tmp / "dump" / "raw" / "test_id" / "wav.scp"
    res = run([sys.executable, "-m", "espnet_plugins.inference.sherpa_decode", "--model_dir", ".",
               "--wav_scp", str(scp), "--output", "text"], cwd=away, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    sherpa = _kaldi_text(away / "text")
    pytorch = _kaldi_text(exp / "decode_ctc_greedy" / "test_id" / "text")
    refs = _kaldi_text(tmp / "dump" / "raw" / "test_id" / "text")
    assert sherpa.keys() == pytorch.keys() == refs.keys() and len(refs) >= 40
    assert abs(_cer(refs, sherpa) - _cer(refs, pytorch)) <= 0.1


@pytest.fixture(scope="module")
def token_model(mini_run, tmp_path_factory):
    """A random-weight BLR-MoE (mini preset, experts perturbed apart) saved as an experiment,
    with the mini recipe's token list, language list and feature statistics."""
    tmp, _ = mini_run
    exp = tmp_path_factory.mktemp("sherpa_token_model")
    recipe_config = yaml.safe_load((tmp / "exp" / "asr_mini" / "config.yaml").read_text(encoding="utf-8"))
    conf = yaml.safe_load((ROOT / "conf" / "train_mini_smear_blr_moe.yaml").read_text())
    conf = {k: v for k, v in conf.items() if not k.startswith("preencoder")}
    conf["frontend_conf"] = recipe_config["frontend_conf"]
    (exp / "train.yaml").write_text(yaml.safe_dump(conf))
    (exp / "tokens.txt").write_text("\n".join(recipe_config["token_list"]) + "\n", encoding="utf-8")
    (exp / "lang_list").write_text("\n".join(recipe_config["lang_list"]) + "\n")
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(exp / "train.yaml"), "--token_list", str(exp / "tokens.txt"), "--lang_list",
        str(exp / "lang_list"), "--token_type", "char",
        "--normalize_conf", f"stats_file={recipe_config['normalize_conf']['stats_file']}"])
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args)
    with torch.no_grad():
        for module in model.encoder.modules():
            if isinstance(module, ExpertLinear):
                for p in module.parameters():
                    p.add_(0.5 * p.std() * torch.randn_like(p))
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    with open(exp / "config.yaml", "w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    torch.save(model.state_dict(), exp / "model.pth")
    return exp / "config.yaml", exp / "model.pth"


def test_sherpa_onnx_matches_pytorch_on_a_model_that_emits_tokens(token_model, mini_run, tmp_path):
    import sherpa_onnx

    config, model_file = token_model
    report = export_sherpa_onnx(str(config), str(model_file), str(tmp_path / "sherpa"), allowed_langs=["hi", "mr"])
    assert report["langs"] == ["hi", "mr"] and report["check"]["max_abs_diff"] < 1e-4
    assert report["parameters"] < report["source_parameters"]  # ta, te experts pruned away
    recognizer = sherpa_onnx.OfflineRecognizer.from_omnilingual_asr_ctc(
        model=str(tmp_path / "sherpa" / "model.onnx"), tokens=str(tmp_path / "sherpa" / "tokens.txt"), num_threads=1)
    s2t = Speech2Text(str(config), str(model_file), allowed_langs=["hi", "mr"])
    tmp, _ = mini_run
    sherpa, pytorch = {}, {}
    for line in _lines(tmp / "dump" / "raw" / "test_id" / "wav.scp"):
        utt, path = line.split(maxsplit=1)
        wave, fs = sf.read(path, dtype="float32")
        assert fs == 16000 and abs(20 * np.log10(np.abs(wave).max()) + 1.0) < 0.05  # the corpus level
        # sherpa-onnx removes the mean (DC) of every waveform: compare on audio without one
        wave = wave - wave.mean()
        wave = (wave * (10 ** (-1.0 / 20) / np.abs(wave).max())).astype(np.float32)
        stream = recognizer.create_stream()
        stream.accept_waveform(fs, wave)
        recognizer.decode_stream(stream)
        sherpa[utt] = stream.result.text.strip()
        pytorch[utt] = s2t(wave).text.strip()
    refs = _kaldi_text(tmp / "dump" / "raw" / "test_id" / "text")
    assert sum(len(h) for h in pytorch.values()) > 10 * len(pytorch)  # it emits tokens
    assert abs(_cer(refs, sherpa) - _cer(refs, pytorch)) <= 0.1
    assert sherpa == pytorch  # the same graph: same fbank, routing, pruning, greedy CTC


def test_sherpa_tokens_format():
    assert sherpa_tokens(["<blank>", "<unk>", "<space>", "क", "<sos/eos>"]) == (
        "<blank> 0\n<unk> 1\n\u2581 2\nक 3\n<sos/eos> 4\n")
    with pytest.raises(ValueError, match="white space"):
        sherpa_tokens(["<blank>", "a b"])


def test_bench_runtime_rtf_writes_its_table(mini_run, tmp_path):
    """bench/bench_runtime_rtf.py on the mini recipe model's stage-12 exports (3 utterances)."""
    import json

    tmp, _ = mini_run
    out = tmp_path / "rtf"
    res = run([sys.executable, str(ROOT / "bench" / "bench_runtime_rtf.py"), "--exp", str(tmp / "exp" / "asr_mini"),
               "--data", str(tmp / "dump" / "raw" / "test_id"), "--utts", "3", "--label", "mini model",
               "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["utterances"] == 3 and result["threads"] == 1 and "--label 'mini model'" in result["command"]
    rows = result["runtimes"]
    assert list(rows) == ["PyTorch (Speech2Text)", "ONNX Runtime (onnx_decode)", "sherpa-onnx (OfflineRecognizer)"]
    assert all(r["rtf"] > 0 and 0 <= r["same_hypothesis_as_pytorch"] <= 3 for r in rows.values())
    assert rows["ONNX Runtime (onnx_decode)"]["same_hypothesis_as_pytorch"] == 3
    table = out.with_suffix(".md").read_text()
    assert "|sherpa-onnx (OfflineRecognizer)|" in table and "1 thread" in table
