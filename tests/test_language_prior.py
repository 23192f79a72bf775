"""A language prior reaches every router (also inside a frozen frontend) and is refused,
with a reason, by models that have nothing it acts on."""
import math

import pytest
import torch
import yaml

from espnet_plugins.inference.speech2text import Speech2Text
from espnet_plugins.tasks.asr import MoEASRTask

torch.set_num_threads(1)

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
LANGS = ["hi", "mr", "ta"]
SIZE = 16


def _args(encoder="conformer", preencoder=None, preencoder_conf=None, frontend=None, langs=LANGS):
    args = MoEASRTask.get_parser().parse_args([])
    args.token_list = list(TOKENS)
    args.token_type = "char"
    args.lang_list = list(langs)
    args.frontend_conf = dict(n_fft=128, win_length=128, hop_length=64, n_mels=8)
    args.normalize = "utterance_mvn"
    args.specaug = None
    if frontend is not None:
        args.frontend, args.frontend_conf = "frozen_encoder", dict(asr_train_config=frontend[0],
                                                                   asr_model_file=frontend[1])
        args.normalize = None
    if preencoder is not None:
        args.preencoder, args.preencoder_conf = preencoder, dict(preencoder_conf)
    if encoder == "blr_moe":
        args.encoder_conf = dict(output_size=SIZE, attention_heads=2, linear_units=24, num_shared_blocks=1,
                                 num_moe_blocks=1, router_channels=8, cnn_module_kernel=3,
                                 expert_init="independent")  # unequal experts: routing shows in the output
    else:
        args.encoder_conf = dict(output_size=SIZE, attention_heads=2, linear_units=32, num_blocks=1,
                                 input_layer="conv2d" if frontend is None else "linear", cnn_module_kernel=3)
    args.encoder = encoder
    args.decoder = None
    args.model_conf = dict(ctc_weight=1.0)
    return args


def _save(tmp_path, name, args):
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args)
    config, checkpoint = tmp_path / f"{name}.yaml", tmp_path / f"{name}.pth"
    config.write_text(yaml.safe_dump(vars(args)), encoding="utf-8")
    torch.save(model.state_dict(), checkpoint)
    return str(config), str(checkpoint)


SMEAR = dict(input_size=8, output_size=8, hidden_size=16, num_experts=3)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prior")
    base = _save(tmp, "blr_moe", _args("blr_moe"))
    return dict(
        dense=_save(tmp, "dense", _args()),
        smear=_save(tmp, "smear", _args(preencoder="smear_moe", preencoder_conf=SMEAR)),
        smear_cond=_save(tmp, "smear_cond", _args(preencoder="smear_moe",
                                                  preencoder_conf=dict(SMEAR, gate_conditioning="language"))),
        blr_moe=base,
        frozen_moe=_save(tmp, "frozen_moe", _args(frontend=base)),
        # a base model that knows ta and hi only (in that order) inside a hi/mr/ta model
        frozen_other_langs=_save(tmp, "frozen_other", _args(frontend=_save(tmp, "base_ta_hi", _args(
            "blr_moe", langs=["ta", "hi"])))),
    )


@pytest.mark.parametrize("name", ["dense", "smear"])
def test_prior_on_a_model_without_router_or_conditioned_gate_is_an_error(models, name):
    parts = {"dense": "frontend DefaultFrontend, encoder ConformerEncoder",
             "smear": "frontend DefaultFrontend, preencoder SmearProjector, encoder ConformerEncoder"}[name]
    with pytest.raises(ValueError, match=rf"a language prior \(\['hi'\]\) was given, but this model \({parts}\) "
                                         "has nothing it acts on, so it would be ignored: a prior needs a language router"):
        Speech2Text(*models[name], allowed_langs=["hi"])
    s2t = Speech2Text(*models[name])  # without a prior it decodes, to its own greedy CTC output
    with torch.no_grad():
        s2t.model.ctc.ctc_lo.bias[0] -= 100.0  # untrained: blank everywhere otherwise
    torch.manual_seed(5)
    wav = torch.randn(3200) * 0.1
    r = s2t(wav)
    with torch.no_grad():
        enc, enc_lens = s2t.model.encode(wav[None], torch.tensor([3200]))
        best = s2t.model.ctc.argmax(enc)[0, : int(enc_lens[0])].tolist()
    ids = [t for i, t in enumerate(best) if t != 0 and (i == 0 or t != best[i - 1])]
    assert ids and r.token_ids == ids and r.tokens == [TOKENS[i] for i in ids] and r.text == "".join(r.tokens)
    assert r.lang is None and r.lang_posterior is None and r.route_frac is None  # no router
    assert (r.smear_gate is None) == (name == "dense")
    if name == "smear":
        assert len(r.smear_gate) == 3 and sum(r.smear_gate) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="decode this model without --allowed_langs"):
        s2t.set_language_prior(["hi", "mr"], mode="soft")
    with pytest.raises(ValueError, match="has nothing it acts on"):
        s2t.check_language_prior_applies()
    s2t.set_language_prior(None)  # removing a prior is always fine


def test_smear_projector_itself_refuses_a_prior_without_conditioning(models):
    s2t = Speech2Text(*models["smear"])
    with pytest.raises(ValueError, match="gate_conditioning='none'.*would be ignored"):
        s2t.model.preencoder.set_language_prior([0])


def test_prior_is_accepted_by_a_router_and_by_a_conditioned_gate(models):
    s2t = Speech2Text(*models["smear_cond"], allowed_langs=["ta"])
    assert s2t.model.preencoder._prior_condition == 2
    s2t.set_language_prior(["hi", "ta"])  # two languages: no single condition, so "unknown"
    assert s2t.model.preencoder._prior_condition is None
    s2t = Speech2Text(*models["blr_moe"], allowed_langs=["mr"])
    assert s2t.model.encoder.router.prior_allowed.tolist() == [False, True, False]
    with pytest.raises(ValueError, match=r"unknown \['bn'\]; the model knows"):
        s2t.set_language_prior(["hi", "bn"])


def test_prior_reaches_the_router_of_a_frozen_moe_frontend(models):
    s2t = Speech2Text(*models["frozen_moe"])
    inner = s2t.model.frontend.asr_model
    torch.manual_seed(2)
    wav, lengths = torch.randn(2, 3200), torch.tensor([3200, 2400])

    def frontend_out():
        with torch.no_grad():
            return s2t.model.frontend(wav, lengths)[0]

    free = frontend_out()
    for lang in range(len(LANGS)):
        s2t.set_language_prior([LANGS[lang]], mode="hard")
        allowed = [i == lang for i in range(len(LANGS))]
        assert inner.encoder.router.prior_allowed.tolist() == allowed
        pruned = frontend_out()
        # The same as setting the prior on the base model itself.
        inner.encoder.set_language_prior([lang])
        torch.testing.assert_close(pruned, frontend_out())
    outs = []
    for lang in LANGS:
        s2t.set_language_prior([lang])
        outs.append(frontend_out())
    assert any(not torch.allclose(outs[0], o) for o in outs[1:]), "the prior had no effect on the frontend"
    s2t.set_language_prior(None)
    assert inner.encoder.router.prior_allowed is None
    torch.testing.assert_close(frontend_out(), free)
    # Built with the prior, too (the asr_inference path).
    built = Speech2Text(*models["frozen_moe"], allowed_langs=["ta"])
    assert built.model.frontend.asr_model.encoder.router.prior_allowed.tolist() == [False, False, True]


@pytest.mark.parametrize("prior", ["hi,mr", "oracle"])
def test_asr_inference_fails_fast_with_the_reason(models, tmp_path, prior):
    from espnet_plugins.bin import asr_inference

    config, checkpoint = models["smear"]
    (tmp_path / "utt2lang").write_text("u1 hi\n")
    with pytest.raises(SystemExit, match="asr_inference: a language prior .*would be ignored"):
        asr_inference.main(["--asr_train_config", config, "--asr_model_file", checkpoint,
                            "--data_path_and_name_and_type", f"{tmp_path}/wav.scp,speech,sound",
                            "--output_dir", str(tmp_path / "out"), "--allowed_langs", prior,
                            "--prior_utt2lang", str(tmp_path / "utt2lang")])
    assert not (tmp_path / "out").exists()


def test_prior_on_a_frozen_base_with_another_language_list_uses_the_base_indices(models, caplog):
    """Outer lang_list hi, mr, ta; the frozen base's router knows [ta, hi]: names map to the
    base's own indices, and a language the base does not know leaves it without a prior."""
    s2t = Speech2Text(*models["frozen_other_langs"])
    router = s2t.model.frontend.asr_model.encoder.router
    assert s2t.langs == LANGS and s2t.model.frontend.asr_model.encoder.langs == ["ta", "hi"]
    s2t.set_language_prior(["hi"])
    assert router.prior_allowed.tolist() == [False, True]
    s2t.set_language_prior(["ta", "mr"])
    assert router.prior_allowed.tolist() == [True, False]
    assert "does not know ['mr']" in caplog.text
    s2t.set_language_prior(["mr"])  # unknown to the base: no prior rather than a wrong one
    assert router.prior_allowed is None and router.prior_bias is None
    with pytest.raises(ValueError, match=r"unknown \['bn'\]"):
        s2t.set_language_prior(["bn"])


def test_utterance_language_and_route_fractions_count_valid_frames_only(models):
    """Speech2Text's per-utterance outputs from hand-made router outputs with padding:
    posterior = softmax(mean over valid frames of the frame log-posteriors)."""
    s2t = Speech2Text(*models["blr_moe"])
    logits = torch.zeros(2, 4, 3)
    logits[0, 0] = torch.tensor([2.0, 0.0, 0.0])  # utterance 1: 2 valid frames ...
    logits[0, 2:, 2] = 50.0  # ... and 2 loud padded frames
    logits[1, :, 1] = 1.0  # utterance 2: 4 valid frames, all mr
    aux = {"lid_logits": logits, "lid_lengths": torch.tensor([2, 4]),
           "expert_index": torch.tensor([[0, 1, 2, 2], [1, 1, 1, 0]]),
           **{f"route_frac_{x}": torch.tensor(0.0) for x in LANGS}}
    langs, posts = s2t._utterance_langs(aux, 2)
    a, b = math.log(math.e ** 2 + 2), math.log(3)  # log-normalisers of frames 1 and 2
    mean_logp = [(2 - a - b) / 2, (-a - b) / 2, (-a - b) / 2]
    expected = [math.exp(v) / sum(math.exp(w) for w in mean_logp) for v in mean_logp]
    assert langs == ["hi", "mr"] and posts[0] == pytest.approx(expected, rel=1e-5)
    c = math.log(math.e + 2)
    assert posts[1] == pytest.approx([math.exp(-c) / (2 * math.exp(-c) + math.exp(1 - c)),
                                      math.exp(1 - c) / (2 * math.exp(-c) + math.exp(1 - c)),
                                      math.exp(-c) / (2 * math.exp(-c) + math.exp(1 - c))], rel=1e-5)
    assert s2t._route_fractions(aux, 2) == [[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]]


def test_batch_with_padding_reports_each_utterance_language_as_alone(models):
    """Speech2Text.batch on a padded batch: every utterance's lang, posterior and route
    fractions are those it gets alone (up to the STFT's edge frames: tolerance)."""
    s2t = Speech2Text(*models["blr_moe"])
    torch.manual_seed(6)
    lengths = [6400, 4000, 2600]
    speech = torch.zeros(3, 6400)
    for i, n in enumerate(lengths):
        speech[i, :n] = torch.randn(n) * 0.1
    results = s2t.batch(speech, torch.tensor(lengths))
    assert len(results) == 3
    for r, n in zip(results, lengths):
        alone = s2t(speech[0 if n == 6400 else lengths.index(n), :n])
        assert r.lang == alone.lang and r.lang == LANGS[max(range(3), key=lambda i: r.lang_posterior[i])]
        assert r.lang_posterior == pytest.approx(alone.lang_posterior, abs=0.05)
        assert sum(r.route_frac) == pytest.approx(1.0) and sum(r.lang_posterior) == pytest.approx(1.0)
