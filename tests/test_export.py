"""ONNX export (issue 19): ONNX Runtime against PyTorch, sparse routing in the graph,
physically pruned experts, and the numpy decoder.

Tiny randomly initialised models from the mini presets (``conf/train_mini.yaml``,
``conf/train_mini_smear_blr_moe.yaml`` with and without its projector, and an LR-MoE
variant), saved like an ESPnet experiment directory, with global MVN statistics from
their own frontend on the test audio. The experts of every stacked expert layer are
perturbed apart (the presets start them equal), so a routing error changes the
output. Inputs are speech-like: voiced harmonics with moving formants and pitch,
syllable envelopes, pauses and a noise floor, in zero-padded batches of different
lengths.

Tolerance: max |log-prob difference| over valid frames <= 1e-4 (float32 kernels
differ by ~1e-6 here), and identical greedy hypotheses.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet_plugins.bin import export
from espnet_plugins.asr.moe.dispatch import DispatchPlan, dense_oracle_expert_linear, grouped_linear
from espnet_plugins.asr.moe.expert_linear import ExpertLinear
from espnet_plugins.asr.moe.traced_dispatch import TracedDispatchPlan
from espnet_plugins.export.fbank_graph import FbankGraph
from espnet_plugins.export.onnx_export import export_onnx, reference_log_probs
from espnet_plugins.inference.ctc_decoding import ctc_greedy
from espnet_plugins.inference.onnx_decode import OnnxSpeech2Text
from espnet_plugins.inference.speech2text import Speech2Text
from espnet_plugins.tasks.asr import MoEASRTask

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
LANGS = ["hi", "mr", "ta", "te"]
TOKENS = ["<blank>", "<unk>", "<space>"] + [chr(0x905 + i) for i in range(40)] + ["<sos/eos>"]
SR = 16000
TOL = 1e-4
N_MELS = 40  # the mini presets' fbank


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Voiced speech-like audio: harmonics of a moving f0 under moving formants."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 200) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    formants = [rng.uniform(300, 900), rng.uniform(900, 2500), rng.uniform(2400, 3500)]
    wobble = [1 + 0.3 * np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6)) for _ in formants]
    voiced = np.zeros_like(t)
    for h in range(1, 40):
        freq = h * f0
        gain = sum(np.exp(-(((freq - f * w) / 150.0) ** 2)) for f, w in zip(formants, wobble))
        voiced += np.where(freq < 7500, gain, 0.0) * np.sin(h * phase) / h**0.5
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(2, 4) * t + rng.uniform(0, 6)), 0, None) ** 0.7
    wave = 0.3 * syllables * voiced / np.abs(voiced).max() + 0.003 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def padded(waves):
    lengths = torch.tensor([len(w) for w in waves])
    speech = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        speech[i, : len(w)] = torch.from_numpy(w)
    return speech, lengths


BATCH = [speechlike(2.0, 1), speechlike(1.3, 2), speechlike(0.7, 3)]


def _configs():
    smear = yaml.safe_load((ROOT / "conf" / "train_mini_smear_blr_moe.yaml").read_text())
    # These random-weight fixtures need an untrained router that spreads a batch over several
    # experts; at these seeds the LayerNorm TDNN does (the preset's norm-free one sends every
    # frame to one expert). The export of the norm-free router: tests/test_deploy_sherpa.py.
    smear["encoder_conf"]["router_conf"]["conv_norm"] = "layer_norm"
    blr = {k: v for k, v in smear.items() if not k.startswith("preencoder")}
    lr = yaml.safe_load(yaml.safe_dump(blr))
    lr["encoder_conf"].update(router_type="linear", moe_attention_projections=[])
    dense = yaml.safe_load((ROOT / "conf" / "train_mini.yaml").read_text())
    interctc = yaml.safe_load(yaml.safe_dump(dense))
    interctc["encoder_conf"].update(num_blocks=2, interctc_layer_idx=[1], interctc_use_conditioning=True)
    interctc["model_conf"]["interctc_weight"] = 0.3
    return {"dense": dense, "dense_interctc": interctc, "lr_moe": lr, "blr_moe": blr,
            "smear_blr_moe": smear}


@pytest.fixture(scope="module")
def exps(tmp_path_factory):
    """name -> (config.yaml, model.pth) of a random-weight experiment directory."""
    tmp = tmp_path_factory.mktemp("export_exps")
    (tmp / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    (tmp / "lang_list").write_text("\n".join(LANGS) + "\n", encoding="utf-8")
    frontend = DefaultFrontend(fs=SR, n_fft=512, win_length=400, hop_length=160, n_mels=N_MELS)
    with torch.no_grad():
        feats, flens = frontend(*padded([speechlike(3.0, s) for s in (10, 11)]))
    frames = torch.cat([f[:n] for f, n in zip(feats, flens)]).double()
    np.savez(tmp / "feats_stats.npz", count=np.array(float(len(frames))),
             sum=frames.sum(0).numpy(), sum_square=frames.pow(2).sum(0).numpy())
    out = {}
    for seed, (name, conf) in enumerate(_configs().items()):
        exp = tmp / name
        exp.mkdir()
        (exp / "train.yaml").write_text(yaml.safe_dump(conf))
        args = MoEASRTask.get_parser().parse_args([
            "--config", str(exp / "train.yaml"), "--token_list", str(tmp / "tokens.txt"),
            "--lang_list", str(tmp / "lang_list"), "--token_type", "char",
            "--normalize_conf", f"stats_file={tmp / 'feats_stats.npz'}"])
        torch.manual_seed(seed)
        model = MoEASRTask.build_model(args)
        with torch.no_grad():  # experts start equal in the presets: make them differ
            for module in model.encoder.modules():
                if isinstance(module, ExpertLinear):
                    for p in module.parameters():
                        p.add_(0.5 * p.std() * torch.randn_like(p))
        with open(exp / "config.yaml", "w", encoding="utf-8") as f:
            yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
        torch.save(model.state_dict(), exp / "model.pth")
        out[name] = (exp / "config.yaml", exp / "model.pth")
    return out


_EXPORTS = {}


def exported(exps, name, allowed=None, mode="hard"):
    """(onnx path, report) of an export, made once per module."""
    key = (name, tuple(allowed or ()), mode)
    if key not in _EXPORTS:
        config, model = exps[name]
        suffix = "" if not allowed else f"_{mode}_{''.join(allowed)}"
        path = config.parent / "onnx" / f"model{suffix}.onnx"
        report = export_onnx(str(config), str(model), str(path), allowed_langs=allowed, prior_mode=mode)
        _EXPORTS[key] = (path, report)
    return _EXPORTS[key]


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def pytorch(exps, name, allowed=None, mode="hard"):
    s2t = Speech2Text(*map(str, exps[name]), allowed_langs=allowed, prior_mode=mode)
    return s2t


def compare(path, model, waves):
    """ORT vs PyTorch on one padded batch: (max |diff|, hyps ORT, hyps PyTorch, PyTorch aux)."""
    speech, lengths = padded(waves)
    with torch.no_grad():
        enc, enc_lengths, aux = model.encode_with_aux(speech, lengths)
        log_probs = model.ctc.log_softmax(enc[0] if isinstance(enc, tuple) else enc)
    out = session(path).run(None, {"speech": speech.numpy(), "speech_lengths": lengths.numpy()})
    assert out[1].tolist() == enc_lengths.tolist()
    assert out[0].shape == tuple(log_probs.shape)
    diff = max(float(np.abs(out[0][i, :n] - log_probs[i, :n].numpy()).max())
               for i, n in enumerate(enc_lengths.tolist()))
    ort_hyps = ctc_greedy(out[0], out[1])  # numpy, as the ONNX decoder runs it
    assert ort_hyps == ctc_greedy(torch.from_numpy(out[0]), torch.from_numpy(out[1]))
    return diff, ort_hyps, ctc_greedy(log_probs, enc_lengths), aux, out


@pytest.mark.parametrize("name", ["dense", "dense_interctc", "lr_moe", "blr_moe", "smear_blr_moe"])
def test_onnx_runtime_matches_pytorch_on_padded_batches(exps, name):
    path, report = exported(exps, name)
    s2t = pytorch(exps, name)
    for waves in (BATCH, [speechlike(3.1, 4)], [BATCH[2], speechlike(1.9, 5)]):
        diff, ort_hyps, torch_hyps, aux, out = compare(path, s2t.model, waves)
        assert diff <= TOL, f"{name}: max |log-prob diff| {diff}"
        assert ort_hyps == torch_hyps and any(ort_hyps), (ort_hyps, torch_hyps)
        if "expert_index" in aux:
            # The batch really uses several experts, so routing is exercised.
            valid = torch.arange(aux["expert_index"].size(1)) < aux["lid_lengths"][:, None]
            assert len(aux["expert_index"][valid].unique()) >= 2
            lid_diff = np.abs(out[2] - aux["lid_logits"].numpy())[valid.numpy()].max()
            assert lid_diff <= TOL
    assert report["check"]["max_abs_diff"] <= TOL and report["check"]["hypotheses_equal"]
    assert (path.parent / "tokens.txt").read_text(encoding="utf-8").split("\n")[:-1] == TOKENS


def test_fbank_graph_equals_espnet_frontend_and_mvn(exps):
    model = pytorch(exps, "dense").model
    fbank = FbankGraph(model.frontend, model.normalize)
    speech, lengths = padded(BATCH)
    with torch.no_grad():
        ref, ref_lengths = model.normalize(*model.frontend(speech, lengths))
        got, got_lengths = fbank(speech, lengths)
    assert got_lengths.tolist() == ref_lengths.tolist() == [201, 131, 71]
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-3
    assert float(ref.abs().mean()) > 0.3  # normalised features, not zeros


def _stored_numbers(path):
    """Float elements stored in an ONNX file (initializers and constants: the weights)."""
    graph = onnx.load(str(path)).graph
    tensors = list(graph.initializer) + [
        a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    return sum(int(np.prod(t.dims)) for t in tensors if t.data_type == onnx.TensorProto.FLOAT)


def _sliced_expert_matmuls(path):
    """MatMul/Gemm nodes whose data input is a Slice with run-time bounds."""
    graph = onnx.load(str(path)).graph
    constants = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}
    count = 0
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        source = producer.get(node.input[0])
        if source is not None and source.op_type == "Slice":
            assert source.input[1] not in constants and source.input[2] not in constants
            assert node.input[1] in constants  # one expert's own weight slice
            count += 1
    assert not [n for n in graph.node if n.op_type == "Einsum"]
    return count


@pytest.mark.parametrize(
    "name,expert_linears", [("lr_moe", 4), ("blr_moe", 6), ("dense", 0)]
)
def test_graph_runs_one_expert_per_frame(exps, name, expert_linears):
    """Each expert layer is E matmuls on run-time slices of the expert-sorted rows."""
    path, _ = exported(exps, name)
    assert _sliced_expert_matmuls(path) == len(LANGS) * expert_linears
    if expert_linears:
        pruned, _ = exported(exps, name, ["hi", "mr"])
        assert _sliced_expert_matmuls(pruned) == 2 * expert_linears


@pytest.mark.parametrize("name", ["blr_moe", "smear_blr_moe"])
def test_pruned_export_equals_pytorch_with_hard_prior_and_is_smaller(exps, name):
    full_path, full = exported(exps, name)
    path, report = exported(exps, name, ["hi", "mr"])
    s2t = pytorch(exps, name, ["hi", "mr"], "hard")
    diff, ort_hyps, torch_hyps, aux, out = compare(path, s2t.model, BATCH)
    assert diff <= TOL and ort_hyps == torch_hyps and any(ort_hyps)
    assert out[2].shape[-1] == 2 and report["langs"] == ["hi", "mr"]
    # The prior matters: without it some frames go to ta/te and the output differs.
    free = pytorch(exps, name).model
    speech, lengths = padded(BATCH)
    free_log_probs, _ = reference_log_probs(free, speech, lengths)
    with torch.no_grad():
        routed = free.encode_with_aux(speech, lengths)[2]["expert_index"]
    valid = torch.arange(routed.size(1)) < aux["lid_lengths"][:, None]
    assert bool((routed[valid] >= 2).any())
    assert float((free_log_probs - torch.from_numpy(out[0])).abs().max()) > 100 * TOL
    # Half the languages' experts and router rows are gone from the file.
    encoder = free.encoder
    expert_params = sum(p.numel() for m in encoder.modules() if isinstance(m, ExpertLinear)
                        for p in m.parameters())
    router_last = encoder.router.output[-1]
    removed = expert_params // 2 + router_last.weight.numel() // 2 + router_last.bias.numel() // 2
    assert full["parameters"] - report["parameters"] == removed
    assert _stored_numbers(full_path) - _stored_numbers(path) == removed
    assert full_path.stat().st_size - path.stat().st_size >= 4 * removed  # float32 bytes
    print(f"\n{name}: {full_path.stat().st_size} -> {path.stat().st_size} bytes with hi,mr")


def test_soft_prior_export_keeps_experts_and_equals_pytorch(exps):
    _, full = exported(exps, "blr_moe")
    path, report = exported(exps, "blr_moe", ["hi"], "soft")
    assert report["parameters"] == full["parameters"] and report["prior_mode"] == "soft"
    s2t = pytorch(exps, "blr_moe", ["hi"], "soft")
    diff, ort_hyps, torch_hyps, aux, out = compare(path, s2t.model, BATCH)
    assert diff <= TOL and ort_hyps == torch_hyps
    # The bias is in the graph: log(0.1) on every language but hi.
    free = pytorch(exps, "blr_moe").model
    speech, lengths = padded(BATCH)
    with torch.no_grad():
        free_logits = free.encode_with_aux(speech, lengths)[2]["lid_logits"]
    shift = out[2][0, :5] - free_logits[0, :5].numpy()
    np.testing.assert_allclose(shift, np.tile([0.0, np.log(0.1)] + [np.log(0.1)] * 2, (5, 1)), atol=1e-4)


def test_traced_dispatch_plan_equals_dense_oracle():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, generator=g)
    w, b = torch.randn(4, 5, 6, generator=g), torch.randn(4, 6, generator=g)
    index = torch.randint(0, 3, (3, 7), generator=g)  # expert 3 gets no token
    valid = torch.arange(7) < torch.tensor([7, 4, 1])[:, None]
    plan = TracedDispatchPlan(index, 4, valid)
    out = plan.scatter(grouped_linear(plan.gather(x), w, b, plan))
    torch.testing.assert_close(out, dense_oracle_expert_linear(x, w, b, index, valid))
    assert plan.counts.tolist() == DispatchPlan.build(index, 4, valid=valid).sizes
    assert int(plan.num_rows) == 12


def test_export_errors_name_the_problem(exps, tmp_path):
    with pytest.raises(ValueError, match=r"unknown \['bn'\]"):
        export_onnx(*map(str, exps["blr_moe"]), str(tmp_path / "m.onnx"), allowed_langs=["hi", "bn"])
    with pytest.raises(ValueError, match="language router"):
        export_onnx(*map(str, exps["dense"]), str(tmp_path / "m.onnx"), allowed_langs=["hi"])
    assert not list(tmp_path.iterdir())


def test_numpy_decoder_and_cli_match_pytorch(exps, tmp_path):
    import soundfile

    path, _ = exported(exps, "blr_moe", ["hi", "mr"])
    scp = tmp_path / "wav.scp"
    lines = []
    for i, w in enumerate(BATCH + [np.zeros(500, np.float32)]):  # the last: too short
        soundfile.write(tmp_path / f"u{i}.wav", w, SR, subtype="PCM_16")
        lines.append(f"u{i} {tmp_path / f'u{i}.wav'}\n")
    scp.write_text("".join(lines))
    # Without torch in the process: onnxruntime + numpy + soundfile only.
    code = ("import sys; from espnet_plugins.inference import onnx_decode as d; "
            f"d.main(['--model', {str(path)!r}, '--wav_scp', {str(scp)!r}, '--output', "
            f"{str(tmp_path / 'text')!r}, '--batch_size', '2', '--lang_output', {str(tmp_path / 'lang')!r}]); "
            "assert 'torch' not in sys.modules, 'onnx_decode imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)
    text = dict(line.partition(" ")[::2] for line in (tmp_path / "text").read_text().splitlines())
    s2t = pytorch(exps, "blr_moe", ["hi", "mr"], "hard")
    for i in range(4):
        wave, _ = soundfile.read(tmp_path / f"u{i}.wav", dtype="float32")
        assert text[f"u{i}"] == s2t(wave).text
    assert text["u3"] == "" and all(text[f"u{i}"] for i in range(3))
    langs = dict(line.split() for line in (tmp_path / "lang").read_text().splitlines())
    assert set(langs) == {"u0", "u1", "u2"} and set(langs.values()) <= {"hi", "mr"}
    onnx_s2t = OnnxSpeech2Text(str(path))
    assert [r["lang"] for r in onnx_s2t.batch(BATCH)] == [s2t(w).lang for w in BATCH]


def test_export_cli(exps, tmp_path):
    config, model = exps["lr_moe"]
    out = tmp_path / "deploy" / "lr.onnx"
    run = subprocess.run(
        [sys.executable, "-m", "espnet_plugins.bin.export", "--asr_train_config", str(config),
         "--asr_model_file", str(model), "--output", str(out), "--allowed_langs", "ta"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=600)
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["langs"] == ["ta"] and summary["check"]["max_abs_diff"] <= TOL
    assert summary["bytes"] == out.stat().st_size
    assert (out.parent / "tokens.txt").is_file() and json.loads(out.with_suffix(".json").read_text())["bytes"] > 0
    with pytest.raises(SystemExit, match=r"unknown \['xx'\]"):
        export.main(["--asr_train_config", str(config), "--asr_model_file", str(model),
                     "--output", str(tmp_path / "bad.onnx"), "--allowed_langs", "xx"])
