"""Integration: every stage of egs/indic_synth/asr1/run.sh on the mini config.

Synthesis -> format -> filter -> tokens -> stats -> ESPnet training -> decoding ->
scoring -> pack, through the real ESPnet trainer and our inference entry point, in a
few minutes on 2 CPU cores. Outputs go to a temporary directory.
"""
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from _helpers import run

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "indic_synth" / "asr1"
MOE = ["--train_config", "train_mini_smear_blr_moe.yaml", "--tag", "mini_moe"]


def _run(tmp, *args, timeout=900):
    cmd = ["./run.sh", "--mini", "true", "--nj", "2", "--datadir", f"{tmp}/data", "--dumpdir", f"{tmp}/dump",
           "--expdir", f"{tmp}/exp", *args]
    res = run(cmd, cwd=RECIPE, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


# mini_run (every stage of the dense mini recipe, once per session) is in conftest.py:
# tests/test_deploy*.py use the same model.


@pytest.fixture(scope="module")
def moe_run(mini_run):
    """The MoE mini config on the same data: stages 5-11, router augmentation included.
    Tests that need the MoE model ask for this fixture, so each one also runs alone."""
    tmp, _ = mini_run
    return tmp, _run(tmp, *MOE, "--stage", "5", "--stop_stage", "11")


def _lines(path):
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_all_stages_produce_their_outputs(mini_run):
    tmp, log = mini_run
    exp = tmp / "exp" / "asr_mini"
    test_sets = sorted(p.name for p in (tmp / "data").glob("test_*"))
    assert {"test_id", "test_ood_voice", "test_ood_variant", "test_ood_noise", "test_ood_tel", "test_ood_band",
            "test_ood_reverb", "test_cs"} <= set(test_sets)
    assert _lines(tmp / "data" / "lang_list") == ["hi", "mr", "ta", "te"]
    assert (tmp / "exp" / "asr_stats_char" / "train" / "feats_stats.npz").exists()
    assert (exp / "valid.loss.ave.pth").exists()
    with zipfile.ZipFile(exp / "packed.zip") as z:  # stage 11 (tests/test_deploy.py decodes it)
        names = {Path(n).name for n in z.namelist()}
        assert z.testzip() is None and {"config.yaml", "model.pth", "feats_stats.npz", "RESULTS.md"} <= names
    # stage 12: an ONNX graph that passes the checker, its export log, the sherpa-onnx bundle
    import onnx

    onnx.checker.check_model(str(exp / "onnx" / "model.onnx"))
    assert "wrote" in (exp / "onnx" / "model.log").read_text()
    assert (exp / "sherpa_onnx" / "model.onnx").stat().st_size > 0 and _lines(exp / "sherpa_onnx" / "tokens.txt")
    for s in test_sets:  # every test utterance decoded exactly once
        ref = [line.split()[0] for line in _lines(tmp / "dump" / "raw" / s / "wav.scp")]
        hyp = [line.split()[0] for line in _lines(exp / "decode_ctc_greedy" / s / "text")]
        assert hyp == ref
    scores = json.loads((exp / "decode_ctc_greedy" / "scores.json").read_text())
    results = (tmp / "exp" / "RESULTS.md").read_text()
    assert "test_ood_tel" in results and "CER" in results
    rows = [line for line in results.splitlines() if line.startswith("|")]
    for s in test_sets:  # consistent counts, and the same numbers in RESULTS.md
        t = scores["test_sets"][s]
        c = t["chars"]
        assert t["num_utts"] == len(_lines(tmp / "dump" / "raw" / s / "wav.scp")) and c["ref"] > 0
        assert c["err"] == c["sub"] + c["del"] + c["ins"] and t["cer_pct"] == pytest.approx(100 * c["err"] / c["ref"])
        # 2 epochs on 60 utterances may still emit nothing (CER 100 %, all deletions; test_learning.py
        # bounds the CER of a model that trained longer): at most 100 % plus its insertions
        assert 0 <= t["cer_pct"] <= 100 * (1 + c["ins"] / c["ref"]) + 1e-9
        assert any(r.startswith(f"|{s}|{t['num_utts']}|") and f"|{c['ref']}|" in r
                   and r.endswith(f"|{t['cer_pct']:.1f}|") for r in rows), s
    assert "- command: `./run.sh --mini true --nj 2 --datadir" in results  # the options, not just ./run.sh
    assert "NOT SCORED WHOLE" not in log and "not scored whole" not in results  # every test set whole


@pytest.mark.parametrize("token_type", ["bpe", "unigram"])
def test_stage4_trains_a_sentencepiece_token_list(mini_run, token_type):
    """--token_type bpe|unigram: a sentencepiece model of that type and --nbpe pieces, and a
    token list (<blank>, <unk> first, <sos/eos> last) holding every piece of the training
    transcripts, which round-trip through the model."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    tmp, _ = mini_run
    d = tmp / "data" / "token_list" / f"{token_type}200"
    shutil.rmtree(d, ignore_errors=True)  # (a developer's MINI_RUN_DIR may hold one)
    log = _run(tmp, "--stage", "4", "--stop_stage", "4", "--token_type", token_type, "--nbpe", "200")
    train_text = Path(re.search(rf"training sentencepiece {token_type} \(200\) on (\S+)", log).group(1))
    tokens = _lines(d / "tokens.txt")
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>" and len(set(tokens)) == len(tokens)
    sp = spm.SentencePieceProcessor(model_file=str(d / "bpe.model"))
    assert sp.get_piece_size() == 200
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString((d / "bpe.model").read_bytes())
    assert model.trainer_spec.model_type == getattr(sentencepiece_model_pb2.TrainerSpec, token_type.upper())
    texts = [line.split(maxsplit=1)[1] for line in _lines(train_text) if len(line.split(maxsplit=1)) == 2]
    pieces = {p for t in texts for p in sp.encode(t, out_type=str)}
    assert pieces and pieces <= set(tokens), sorted(pieces - set(tokens))[:10]
    assert all(sp.decode(sp.encode(t)) == t for t in texts[:50])


def test_rerun_redoes_a_half_written_decode_dir(mini_run):
    """Stage 8 killed mid-way (job 1's output cut short, no merged text): the rerun decodes
    the set again, in full, instead of skipping it or merging the partial outputs."""
    tmp, _ = mini_run
    dec = tmp / "exp" / "asr_mini" / "decode_ctc_greedy" / "test_id"
    full = (dec / "text").read_text(encoding="utf-8")
    (dec / "text").unlink()
    partial = dec / "logdir" / "output.1" / "text"
    partial.write_text("".join(partial.read_text(encoding="utf-8").splitlines(keepends=True)[:1]), encoding="utf-8")
    log = _run(tmp, "--stage", "8", "--stop_stage", "8", "--test_sets", "test_id")
    assert "decoding test_id" in log
    assert (dec / "text").read_text(encoding="utf-8") == full


def test_training_lowered_the_loss(mini_run):
    tmp, _ = mini_run
    log = (tmp / "exp" / "asr_mini" / "train.log").read_text()
    losses = [float(x) for x in re.findall(r"\[train\] .*?loss=([0-9.]+)", log)]
    assert len(losses) == 2 and losses[1] < losses[0], losses


def test_rerun_skips_finished_work(mini_run):
    tmp, _ = mini_run
    log = _run(tmp, "--stage", "1", "--stop_stage", "8")
    assert "exists, skipping training" in log and "exists, skipping" in log
    assert "training exp" not in log


def test_router_stages_with_smear_and_blr_moe(moe_run):
    """Same data, the MoE mini config: router augmentation, language prior, routing analysis."""
    tmp, _ = moe_run
    cfg = MOE
    exp = tmp / "exp" / "asr_mini_moe"
    assert (tmp / "exp" / "asr_mini_moe_router_adapt" / "valid.loss.ave.pth").exists()
    adapt_log = (tmp / "exp" / "asr_mini_moe_router_adapt" / "train.log").read_text()
    assert "loss_lid=" in adapt_log and "loss_ctc" not in adapt_log.split("1epoch results")[-1]
    routing = (exp / "decode_ctc_greedy" / "routing" / "routing.md").read_text()
    assert "LID confusion" in routing and "Share of frames per language expert" in routing and "SMEAR gate" in routing
    assert (exp / "decode_ctc_greedy" / "routing" / "expert_usage_test_id.png").stat().st_size > 0
    curves = (exp / "decode_ctc_greedy" / "routing" / "training_curves.md").read_text()
    assert "### gate_entropy" in curves and "### lid_acc" in curves and "| 2 |" in curves
    # Expert pruning: with the prior hi,mr no frame goes to the ta or te experts.
    _run(tmp, *cfg, "--stage", "8", "--stop_stage", "8", "--allowed_langs", "hi,mr", "--test_sets", "test_id")
    fracs = [line.split()[1:] for line in _lines(exp / "decode_ctc_greedy_prior_hard_himr" / "test_id" / "route_frac")]
    assert fracs and all(float(ta) == 0.0 and float(te) == 0.0 for _, _, ta, te in fracs)
    assert {line.split()[1] for line in _lines(exp / "decode_ctc_greedy_prior_hard_himr" / "test_id" / "lang")} <= {"hi", "mr"}
    # Oracle priors: each utterance pruned to its own language (or to a wrong one).
    ref = dict(line.split() for line in _lines(tmp / "dump" / "raw" / "test_id" / "utt2lang"))
    for prior, same in (("oracle", True), ("oracle_wrong", False)):
        _run(tmp, *cfg, "--stage", "8", "--stop_stage", "8", "--allowed_langs", prior, "--test_sets", "test_id")
        hyp = dict(line.split() for line in _lines(exp / f"decode_ctc_greedy_prior_hard_{prior}" / "test_id" / "lang"))
        assert hyp.keys() == ref.keys() and all((hyp[u] == ref[u]) == same for u in ref)


def test_lm_stage_and_lm_decoding_routed_and_oracle(moe_run):
    """Stage 4's word n-grams (KenLM, one per language + pooled, OOV of each test set) and
    stage 8 with pyctcdecode + the LM of the router's language / the reference language."""
    import yaml

    tmp, _ = moe_run
    lms = yaml.safe_load((tmp / "exp" / "ngram_3gram" / "lms.yaml").read_text())
    assert lms["langs"] == ["hi", "mr", "ta", "te"]
    assert lms["lms"]["pooled"]["sentences"] == sum(lms["lms"][k]["sentences"] for k in lms["langs"]) > 0
    assert 0 < lms["oov"]["test_id"]["all"]["oov_pooled"] <= 1 and "mixed" in lms["oov"]["test_cs"]
    exp = tmp / "exp" / "asr_mini_moe"
    for mode in ("routed", "oracle"):
        _run(tmp, *MOE, "--stage", "8", "--stop_stage", "9", "--test_sets", "test_id test_cs",
             "--inference_config", f"conf/decode_ctc_beam_lm_{mode}.yaml")
        for s in ("test_id", "test_cs"):
            d = exp / f"decode_ctc_beam_lm_{mode}" / s
            ref_ids = [line.split()[0] for line in _lines(tmp / "dump" / "raw" / s / "wav.scp")]
            text = {u: h for u, _, h in (line.partition(" ") for line in _lines(d / "text"))}
            assert sorted(text) == sorted(ref_ids)
            used = dict(line.split() for line in _lines(d / "lm"))
            ref = {u: sorted(ls) for u, *ls in (line.split() for line in _lines(tmp / "dump" / "raw" / s / "utt2lang"))}
            if mode == "routed":  # the router's utterance language picks the LM
                assert used == dict(line.split() for line in _lines(d / "lang"))
            else:  # the reference language; code-switched: both, mixed equally
                assert used == {u: ls[0] if len(ls) == 1 else "+".join(f"{k}:0.50" for k in ls) for u, ls in ref.items()}
            nbest = [line.split(" ", 3) for line in _lines(d / "nbest")]
            firsts = {u: (h[0] if h else "") for u, rank, _, *h in nbest if rank == "1"}
            assert firsts == {u: t.strip() for u, t in text.items()} and len(nbest) <= 5 * len(ref_ids)
            words = {}  # no file when every hypothesis is empty
            for u, _, start, dur, w in (line.split() for line in (_lines(d / "words") if (d / "words").exists() else [])):
                assert float(start) >= 0 and float(dur) >= 0
                words.setdefault(u, []).append(w)
            assert all(words.get(u, []) == t.split() for u, t in text.items())
        assert (exp / f"decode_ctc_beam_lm_{mode}" / "scores.json").exists()


def test_router_augmentation_changes_only_the_router(moe_run):
    """Stage 7 (ESPnet's trainer, --train_router_only, --init_param from stage 6): every
    tensor of its checkpoint but the router's equals stage 6's, bit for bit (BatchNorm
    statistics and normalisation buffers included); the router's changed."""
    import torch

    tmp, _ = moe_run
    base = torch.load(tmp / "exp" / "asr_mini_moe" / "valid.loss.ave.pth", map_location="cpu")
    adapted = torch.load(tmp / "exp" / "asr_mini_moe_router_adapt" / "valid.loss.ave.pth", map_location="cpu")
    assert base.keys() == adapted.keys()
    changed = sorted(k for k in base if not torch.equal(base[k], adapted[k]))
    assert changed and all(k.startswith("encoder.router.") for k in changed), changed


def test_decoding_the_router_augmented_model(moe_run):
    """--decode_router_adapt true: stages 8-9 decode and score stage 7's model, in its own
    decode dir and RESULTS.md section; the base model's decoding stays as it was."""
    tmp, _ = moe_run
    base_hyp = tmp / "exp" / "asr_mini_moe" / "decode_ctc_greedy" / "test_id" / "text"
    before = base_hyp.read_bytes()
    log = _run(tmp, *MOE, "--stage", "8", "--stop_stage", "9", "--decode_router_adapt", "true",
               "--test_sets", "test_id")
    adapt = tmp / "exp" / "asr_mini_moe_router_adapt"
    dec = adapt / "decode_ctc_greedy" / "test_id"
    assert f"decoding test_id -> {dec.parent} " in log
    ref = [line.split()[0] for line in _lines(tmp / "dump" / "raw" / "test_id" / "wav.scp")]
    assert [line.split()[0] for line in _lines(dec / "text")] == ref
    assert [line.split()[0] for line in _lines(dec / "lang")] == ref
    assert (adapt / "decode_ctc_greedy" / "scores.json").exists() and base_hyp.read_bytes() == before
    results = (tmp / "exp" / "RESULTS.md").read_text()
    section = results.split("## mini_moe_router_adapt / ctc_greedy")[1].split("section end")[0]
    assert f"- model file: `{adapt}/valid.loss.ave.pth`" in section and "|test_id|" in section
    assert "## mini_moe / ctc_greedy" in results  # the base model's section is kept


def test_inference_survives_silence_clicks_and_an_unseen_language(moe_run, tmp_path):
    """No speech, inputs too short for the STFT/subsampling, and a language the model
    never saw all give a result (possibly empty), never an exception."""
    import numpy as np
    import soundfile as sf

    from espnet_plugins.inference.speech2text import Speech2Text

    tmp, _ = moe_run
    exp = tmp / "exp" / "asr_mini_moe"
    s2t = Speech2Text(str(exp / "config.yaml"), str(exp / "valid.loss.ave.pth"))
    assert 256 < s2t.min_samples < 16000
    for n in (0, 1, 100, s2t.min_samples - 1):
        r = s2t(np.zeros(n, dtype=np.float32))
        assert r.text == "" and r.token_ids == []
    r = s2t(np.zeros(16000, dtype=np.float32))
    assert isinstance(r.text, str) and r.lang in ("hi", "mr", "ta", "te")
    # A batch mixing a too-short and a normal utterance decodes the normal one.
    import torch
    speech = torch.zeros(2, 16000)
    speech[1] = torch.randn(16000) * 0.1
    results = s2t.batch(speech, torch.tensor([50, 16000]))
    assert results[0].text == "" and results[1].lang in ("hi", "mr", "ta", "te")
    # Unseen language: English from espeak-ng, resampled to 16 kHz.
    wav = tmp_path / "en.wav"
    run(["espeak-ng", "-v", "en", "-w", str(tmp_path / "raw.wav"), "this is an unseen language"], check=True,
        timeout=60)
    run(["sox", str(tmp_path / "raw.wav"), "-r", "16000", "-c", "1", str(wav)], check=True, timeout=60)
    audio, fs = sf.read(wav, dtype="float32")
    r = s2t(audio)
    assert fs == 16000 and isinstance(r.text, str) and r.lang in ("hi", "mr", "ta", "te")
    assert abs(sum(r.lang_posterior) - 1) < 1e-4
    # A prior naming a language the model does not know is refused with the known ones.
    with pytest.raises(ValueError, match=r"unknown \['bn'\]; the model knows \['hi', 'mr', 'ta', 'te'\]"):
        s2t.set_language_prior(["hi", "bn"])
    # ... and by the decoding CLI, before any decoding, without a traceback.
    res = run(
        [sys.executable, "-m", "espnet_plugins.bin.asr_inference", "--asr_train_config", str(exp / "config.yaml"),
         "--asr_model_file", str(exp / "valid.loss.ave.pth"), "--allowed_langs", "hi,bn",
         "--data_path_and_name_and_type", f"{tmp}/dump/raw/test_id/wav.scp,speech,sound",
         "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "unknown ['bn']" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out" / "text").exists()
