"""Regression tests for the defects of the core review (issue 33), one section each."""
import types
from pathlib import Path

import pytest
import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.specaug.abs_specaug import AbsSpecAug

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.asr.espnet_model import MoEASRModel

VOCAB = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
LANGS = ["hi", "mr", "ta"]
ROOT = Path(__file__).resolve().parents[1]


def _blr_moe(**kw):
    return BLRMoEEncoder(input_size=8, output_size=16, attention_heads=2, linear_units=16, num_shared_blocks=1,
                         num_moe_blocks=1, langs=LANGS, router_channels=8, input_layer="linear", **kw)


def _model(encoder=None, specaug=None, **kw):
    torch.manual_seed(0)
    encoder = encoder if encoder is not None else _blr_moe()
    return MoEASRModel(vocab_size=len(VOCAB), token_list=VOCAB, frontend=None, specaug=specaug, normalize=None,
                       preencoder=None, encoder=encoder, postencoder=None, decoder=None,
                       ctc=CTC(len(VOCAB), encoder.output_size()), joint_network=None, ctc_weight=1.0,
                       langs=LANGS, **kw)


def _batch(nan: bool = False):
    torch.manual_seed(1)
    speech = torch.randn(2, 12, 8)
    if nan:
        speech[0, 3] = float("nan")
    return dict(speech=speech, speech_lengths=torch.tensor([12, 9]),
                text=torch.tensor([[2, 3, 2], [3, -1, -1]]), text_lengths=torch.tensor([3, 1]),
                lang=torch.tensor([[1], [2]]), lang_lengths=torch.tensor([1, 1]))


class CountingSpecAug(AbsSpecAug):
    """Records how often ESPnet's encode applied it (and leaves the features as they are)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, x_lengths=None):
        self.calls += 1
        return x, x_lengths


# ---------------------------------------------------------------- 1. router augmentation


class FakeReporter:
    def get_total_count(self):
        return 0


def test_router_only_training_applies_specaug_and_the_nonfinite_guard(monkeypatch):
    """Through MoETrainer.train_one_epoch (ESPnet's loop stubbed to: model.train(), then
    one forward per batch), as --train_router_only runs it."""
    from espnet2.train.trainer import Trainer

    from espnet_plugins.train.router_only import freeze_all_but_router
    from espnet_plugins.train.trainer import MoETrainer

    model = _model(specaug=CountingSpecAug())
    freeze_all_but_router(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith("encoder.router.")}
    b = _batch()
    del b["text"], b["text_lengths"]  # router augmentation: audio + language only
    bad = _batch(nan=True)
    del bad["text"], bad["text_lengths"]
    seen = []

    def espnet_loop(cls, model, iterator, **kw):
        model.train()
        for batch in iterator:
            seen.append((model.training, model.encoder.router.training, model.encoder.encoders[0].training,
                         model.encoder.embed.training, model(**batch)))
        return False

    monkeypatch.setattr(Trainer, "train_one_epoch", classmethod(espnet_loop))
    options = types.SimpleNamespace(train_router_only=True, specaug_start_iter=0)  # as build_options sets
    MoETrainer.train_one_epoch(model=model, iterator=[b, bad], optimizers=[], schedulers=[], scaler=None,
                               reporter=FakeReporter(), summary_writer=None, options=options,
                               distributed_option=None)
    for training, router, block, embed, _ in seen:
        assert training and router and not block and not embed  # frozen parts in eval mode
    (loss, stats, _), (bad_loss, bad_stats, _) = seen[0][-1], seen[1][-1]
    assert model.specaug.calls == 2
    assert float(stats["nonfinite_step"]) == 0.0 and torch.isfinite(loss)
    assert not torch.isfinite(bad_loss) and float(bad_stats["nonfinite_step"]) == 1.0
    model.eval()
    model(**b)
    assert model.specaug.calls == 2  # none in eval mode



def test_router_augmentation_config_applies_specaug_from_the_first_update(tmp_path):
    """Stage 7 merges router_adapt.yaml over the training config; the trainer's schedule
    counts from that run's start, and router augmentation runs < 400 iterations."""
    import subprocess
    import sys

    import yaml

    asr1 = ROOT / "egs" / "indic_synth" / "asr1"
    merged = subprocess.run([sys.executable, "local/merge_yaml.py", str(ROOT / "conf" / "train_blr_moe.yaml"),
                             "conf/router_adapt.yaml"], cwd=asr1, capture_output=True, text=True, check=True,
                            timeout=60).stdout
    conf = yaml.safe_load(merged)
    assert conf["specaug"] == "specaug" and conf["specaug_start_iter"] == 0


# ---------------------------------------------------------------- 3. SMEAR downsample_rate >= 2


def _smear_exp(tmp_path, downsample_rate: int):
    """(config.yaml, model.pth) of a random-weight SMEAR + BLR-MoE mini model."""
    import numpy as np
    import yaml
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet_plugins.tasks.asr import MoEASRTask

    conf = yaml.safe_load((ROOT / "conf" / "train_mini_smear_blr_moe.yaml").read_text())
    conf["preencoder_conf"].update(downsample_rate=downsample_rate, residual=False)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\n<space>\na\nb\nc\n<sos/eos>\n")
    (tmp_path / "lang_list").write_text("hi\nmr\nta\nte\n")
    np.savez(tmp_path / "feats_stats.npz", count=np.array(100.0), sum=np.zeros(40), sum_square=np.full(40, 100.0))
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(tmp_path / "train.yaml"), "--token_list", str(tmp_path / "tokens.txt"),
        "--lang_list", str(tmp_path / "lang_list"), "--token_type", "char",
        "--normalize_conf", f"stats_file={tmp_path / 'feats_stats.npz'}"])
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args)
    with open(tmp_path / "config.yaml", "w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    return tmp_path / "config.yaml", tmp_path / "model.pth"


def test_downsampler_raises_espnets_too_short_error():
    from espnet2.legacy.nets.pytorch_backend.transformer.subsampling import TooShortUttError

    from espnet_plugins.asr.preencoder.conv1d_downsampler import Conv1dDownsampler

    down = Conv1dDownsampler(4, downsample_rate=5)
    with pytest.raises(TooShortUttError, match="4 frames.*downsample_rate=5"):
        down(torch.zeros(2, 7, 4), torch.tensor([7, 4]))


def test_smear_projector_with_downsample_rate_5_loads_decodes_and_exports(tmp_path):
    from espnet_plugins.export.onnx_export import export_onnx
    from espnet_plugins.inference.onnx_decode import OnnxSpeech2Text
    from espnet_plugins.inference.speech2text import Speech2Text

    config, ckpt = _smear_exp(tmp_path, downsample_rate=5)
    s2t = Speech2Text(str(config), str(ckpt))
    # fbank hop 160, x5 projector, x4 conv2d: ~20 frames of 10 ms per encoder frame
    assert 16000 * 0.2 < s2t.min_samples < 16000 * 0.5
    g = torch.Generator().manual_seed(0)
    speech = 0.1 * torch.randn(3, 24000, generator=g)
    lengths = torch.tensor([24000, 16000, s2t.min_samples - 1])
    results = s2t.batch(speech, lengths)
    assert [r.token_ids for r in results][2] == [] and results[0].lang in ("hi", "mr", "ta", "te")
    export_onnx(str(config), str(ckpt), str(tmp_path / "onnx" / "model.onnx"))
    onnx_s2t = OnnxSpeech2Text(str(tmp_path / "onnx" / "model.onnx"))
    assert onnx_s2t.min_samples == s2t.min_samples
    onnx_results = onnx_s2t.batch([speech[i, : int(n)].numpy() for i, n in enumerate(lengths)])
    assert [r["token_ids"] for r in onnx_results] == [r.token_ids for r in results]
    assert [r["lang"] for r in onnx_results] == [r.lang for r in results]


# ---------------------------------------------------------------- 4. ESPnet's init: option


def test_espnet_init_keeps_the_projectors_init_contract():
    """``init: xavier_uniform`` (ESPnet's ``initialize``) must not treat the stacked
    [M, in, out] expert weights as conv kernels nor undo the projector's zero-inits."""
    from espnet2.torch_utils.initialize import initialize

    from espnet_plugins.asr.preencoder.smear_projector import SmearProjector

    torch.manual_seed(0)
    proj = SmearProjector(input_size=16, output_size=16, hidden_size=64, num_experts=4, residual=True,
                          langs=LANGS, gate_conditioning="language")
    initialize(proj, "xavier_uniform")
    bank = proj.experts
    assert not bank.w2.any() and not bank.b2.any()  # residual: the projector starts as the identity
    assert not proj.condition_bias.weight.any()  # conditioning starts as a no-op
    # w1 per expert as torch.nn.Linear(16, 64): U(+-1/4), not xavier with conv fans (64*16 in, 4*16 out)
    assert 0.2 < float(bank.w1.abs().max()) <= 0.25 and 0.2 < float(bank.b1.abs().max()) <= 0.25
    assert not torch.equal(bank.w1[0], bank.w1[1])  # independent experts
    x, lengths = torch.randn(2, 10, 16), torch.tensor([10, 7])
    y, _ = proj.eval()(x, lengths)
    assert torch.equal(y[0], x[0]) and torch.equal(y[1, :7], x[1, :7])


def test_espnet_init_through_the_task_keeps_a_plain_bank_linear_like(tmp_path):
    """``--init xavier_uniform`` via build_model: a non-residual bank is reset per expert too."""
    import yaml

    from espnet_plugins.tasks.asr import MoEASRTask

    conf = yaml.safe_load((ROOT / "conf" / "train_mini_smear_blr_moe.yaml").read_text())
    conf["preencoder_conf"].update(residual=False, hidden_size=64)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\na\n<sos/eos>\n")
    (tmp_path / "lang_list").write_text("hi\nmr\n")
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(tmp_path / "train.yaml"), "--token_list", str(tmp_path / "tokens.txt"),
        "--lang_list", str(tmp_path / "lang_list"), "--normalize", "none", "--init", "xavier_uniform"])
    bank = MoEASRTask.build_model(args).preencoder.experts
    bound1, bound2 = 1 / 40 ** 0.5, 1 / 64 ** 0.5  # Linear(40, 64), Linear(64, 40)
    assert 0.8 * bound1 < float(bank.w1.abs().max()) <= bound1 and float(bank.b1.abs().max()) <= bound1
    assert 0.8 * bound2 < float(bank.w2.abs().max()) <= bound2 and float(bank.b2.abs().max()) > 0


# ---------------------------------------------------------------- 5. plugin import errors


def test_a_broken_plugin_module_fails_the_task_import(monkeypatch):
    """A bug inside a method module (here: an import that fails) must surface, not
    silently unregister blr_moe / smear_moe / frozen_encoder."""
    import runpy
    import sys

    monkeypatch.setitem(sys.modules, "espnet_plugins.asr.preencoder.smear_projector", None)
    with pytest.raises(ImportError, match="espnet_plugins.asr.preencoder.smear_projector"):
        # the task module's code, run afresh (the imported module stays as it is)
        runpy.run_path(str(ROOT / "espnet_plugins" / "tasks" / "asr.py"), run_name="asr_task_copy")


# ---------------------------------------------------------------- 6. pruning dtype, RTF sample rate


@pytest.mark.parametrize("router_type", ["tdnn", "linear"])
def test_pruning_keeps_the_models_dtype_and_equals_the_hard_prior(router_type):
    from espnet_plugins.export.pruning import prune_language_experts

    torch.manual_seed(0)
    enc = _blr_moe(router_type=router_type, expert_init="independent").double().eval()
    x, ilens = torch.randn(2, 20, 8, dtype=torch.float64), torch.tensor([20, 13])
    with torch.no_grad():
        enc.set_language_prior([0, 2])
        ref, _, _ = enc(x, ilens)
        enc.set_language_prior(None)
        prune_language_experts(enc, [0, 2])
        out, _, _ = enc(x, ilens)
    assert {p.dtype for p in enc.parameters()} == {torch.float64}
    assert {p.device for p in enc.parameters()} == {x.device}
    torch.testing.assert_close(out[0], ref[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[1, :13], ref[1, :13], rtol=0, atol=1e-12)


def test_asr_inference_rtf_uses_the_audio_sample_rate(tmp_path):
    import json

    import numpy as np
    import soundfile

    from espnet_plugins.bin import asr_inference

    config, ckpt = _smear_exp(tmp_path, downsample_rate=1)
    rng = np.random.default_rng(0)
    lines = []
    for key, seconds, rate in (("u1", 1.5, 8000), ("u2", 1.0, 8000), ("u3", 0.5, 16000)):
        path = tmp_path / f"{key}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(int(seconds * rate)), rate)
        lines.append(f"{key} {path}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    asr_inference.main(["--asr_train_config", str(config), "--asr_model_file", str(ckpt), "--batch_size", "2",
                        "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
                        "--output_dir", str(tmp_path / "out")])
    rtf = json.loads((tmp_path / "out" / "rtf.json").read_text())
    assert rtf["audio_seconds"] == pytest.approx(3.0)
    assert rtf["rtf"] == pytest.approx(rtf["decode_seconds"] / 3.0)
    assert len((tmp_path / "out" / "text").read_text().splitlines()) == 3


# ---------------------------------------------------------------- 2. LID loss without labels / router


def test_training_a_router_without_language_labels_is_an_error():
    model = _model().train()
    b = _batch()
    del b["lang"], b["lang_lengths"]
    with pytest.raises(ValueError, match=r"no 'lang'.*utt2lang.*lid_weight: 0"):
        model(**b)
    model.eval()  # validation / decoding without labels: no LID loss, no error
    loss, stats, _ = model(**b)
    assert "loss_lid" not in stats and torch.isfinite(loss)
    no_lid = _model(lid_weight=0.0).train()  # an explicit choice: the router learns nothing from LID
    loss, stats, _ = no_lid(**b)
    assert "loss_lid" not in stats and torch.isfinite(loss)


def test_router_augmentation_conditions_a_frozen_gate_as_decoding_does():
    """Router-only training (now in training mode) must not hand utt2lang labels to a
    language-conditioned SMEAR gate: the router learns on the gate decoding will run."""
    from espnet_plugins.asr.preencoder.smear_projector import SmearProjector

    from espnet_plugins.train.router_only import freeze_all_but_router, router_only_train_mode

    proj = SmearProjector(input_size=8, output_size=8, hidden_size=8, num_experts=2, langs=LANGS,
                          gate_conditioning="language")
    model = _model()
    model.preencoder = proj
    seen = []
    forward_with_aux = proj.forward_with_aux
    proj.forward_with_aux = lambda x, n, lang=None: seen.append(lang) or forward_with_aux(x, n, lang)
    b = _batch()
    model.train()(**b)
    assert seen[-1].tolist() == [1, 2]  # ordinary training: the labels
    freeze_all_but_router(model)
    router_only_train_mode(model)  # MoETrainer, before each batch
    del b["text"], b["text_lengths"]
    model(**b)
    assert seen[-1] is None


def test_lid_weight_on_a_model_without_router_warns_once_in_training(caplog):
    """An explicit lid_weight does nothing without a language router: one warning the
    first time the model trains (not at decoding: old dense configs set it and still load)."""
    import logging

    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

    def dense(**kw):
        enc = TransformerEncoder(8, output_size=16, attention_heads=2, linear_units=16, num_blocks=1,
                                 input_layer="linear")
        return _model(encoder=enc, **kw)

    b = _batch()
    for model, warned in ((dense(lid_weight=0.3), True), (dense(), False), (dense(lid_weight=0.0), False),
                          (_model(lid_weight=0.3), False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            model.eval()(**b)  # validation / decoding: never
            model.train()(**b)
            model(**b)
        assert caplog.text.count("has no effect: this model has no language router") == int(warned), model
    assert dense().lid_weight == 0.3  # the default: the BLR-MoE paper's λ
