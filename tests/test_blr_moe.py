"""BLRMoEEncoder: ESPnet encoder contract, padding invariance, equivalence with a dense
encoder, expert pruning, decoupled router, and a short training run."""
from pathlib import Path

import pytest
import torch

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder

torch.set_num_threads(1)
LANGS = ["hi", "mr", "ta"]
IDIM = 20


def tiny(**overrides):
    conf = dict(
        input_size=IDIM,
        output_size=16,
        attention_heads=2,
        linear_units=24,
        num_shared_blocks=2,
        num_moe_blocks=2,
        langs=LANGS,
        router_channels=16,
        cnn_module_kernel=5,
    )
    conf.update(overrides)
    torch.manual_seed(0)
    return BLRMoEEncoder(**conf)


def batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), IDIM, generator=g)
    ilens = torch.tensor(lengths)
    x = x * (torch.arange(max(lengths)) < ilens.unsqueeze(1)).unsqueeze(-1)
    return x, ilens


def test_defaults_contract():
    enc = BLRMoEEncoder(input_size=80, langs=LANGS)
    assert enc.output_size() == 144 and enc.langs == LANGS and enc.num_experts == 3
    x = torch.randn(2, 41, 80)
    torch.manual_seed(0)  # the same dropout masks for both calls
    out, olens, states = enc(x, torch.tensor([41, 30]))
    assert states is None
    assert out.shape == (2, 9, 144) and olens.tolist() == [9, 6]
    torch.manual_seed(0)
    out2, olens2, aux = enc.forward_with_aux(x, torch.tensor([41, 30]))
    assert torch.equal(out2, out) and torch.equal(olens2, olens)
    assert aux["lid_logits"].shape == (2, 9, 3)
    assert aux["lid_lengths"].tolist() == [9, 6]
    fractions = torch.stack([aux[f"route_frac_{lang}"] for lang in LANGS])
    torch.testing.assert_close(fractions.sum(), torch.tensor(1.0))
    (out.mean() + aux["lid_logits"].mean()).backward()
    assert all(p.grad is not None for p in enc.router_parameters())


def test_language_inventory_errors():
    with pytest.raises(ValueError, match="lang_list"):
        tiny(langs=None)
    with pytest.raises(ValueError, match="num_experts=2"):
        tiny(num_experts=2)
    enc = tiny(langs=None, num_experts=2)
    assert enc.langs is None and enc.num_experts == 2
    with pytest.raises(ValueError, match="q, k, v, o"):
        tiny(moe_attention_projections=["v", "x"])


@pytest.mark.parametrize(
    "input_layer", ["conv2d", "conv2d2", "conv2d6", "conv2d8", "linear"]
)
def test_output_lengths_are_arithmetic(input_layer):
    enc = tiny(input_layer=input_layer, num_shared_blocks=0, num_moe_blocks=1).eval()
    for length in (15, 16, 17, 50):
        out, olens, _ = enc(*batch([length]))
        assert olens.item() == out.size(1) > 0


@pytest.mark.parametrize(
    "conf",
    [
        dict(block_type="conformer", router_type="tdnn"),
        dict(block_type="conformer", router_type="linear"),
        dict(block_type="transformer", router_type="tdnn", macaron_style=False),
        dict(block_type="transformer", router_type="linear"),
        dict(routing="utterance", moe_attention_projections=["q", "k", "v", "o"]),
    ],
    ids=[
        "conformer-tdnn",
        "conformer-linear",
        "transformer-tdnn",
        "transformer-linear",
        "utterance-qkvo",
    ],
)
def test_padding_invariance(conf):
    """An utterance alone == the same utterance in a zero-padded batch (eval mode).

    Independent experts, and routing that uses several of them (checked), so that a
    frame sent to the wrong expert (padding changing a decision, expert order mixed up
    in dispatch) changes the output."""
    enc = tiny(expert_init="independent", **conf).eval()
    _spread_routing(enc)
    # 58 frames alone: 13 outputs; stock ESPnet mask slicing gives 15 in this batch.
    lengths = [75, 58, 31]
    x, ilens = batch(lengths)
    with torch.no_grad():
        out, olens, aux = enc.forward_with_aux(x, ilens)
        logits = aux["lid_logits"]
        valid = torch.arange(logits.size(1)) < olens.unsqueeze(1)
        used = aux["expert_index"][valid].unique()
        assert len(used) >= 2, f"routing uses only experts {used.tolist()}: the test would not see routing bugs"
        for i, length in enumerate(lengths):
            alone, alone_len, alone_aux = enc.forward_with_aux(x[i : i + 1, :length], ilens[i : i + 1])
            alone_logits = alone_aux["lid_logits"]
            n = alone_len.item()
            assert olens[i].item() == n == alone.size(1)
            torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(
                logits[i, :n], alone_logits[0], atol=1e-5, rtol=0
            )


def _spread_routing(enc):
    """Router decisions that follow the input (several experts per batch and per utterance),
    not its untrained output bias."""
    router = enc.router
    last = router.output[-1] if router.router_type == "tdnn" else router.output
    with torch.no_grad():
        last.bias.zero_()
        last.weight.mul_(10.0)


def _dense_copy(moe_enc, expert, **conf):
    """The same network with dense layers holding ``expert``'s weights."""
    dense = tiny(num_shared_blocks=len(moe_enc.encoders), num_moe_blocks=0, **conf)
    state = {}
    moe_state = moe_enc.state_dict()
    for name, target in dense.state_dict().items():
        source = moe_state[name]
        if source.shape != target.shape:  # expert weight [E, in, out] or bias [E, out]
            source = source[expert].T if source.dim() == 3 else source[expert]
        state[name] = source
    dense.load_state_dict(state)
    return dense


@pytest.mark.parametrize(
    "conf",
    [
        dict(langs=["hi"], moe_attention_projections=["q", "k", "v", "o"]),
        dict(block_type="transformer", moe_ffn="second"),
        dict(router_type="linear", moe_attention_projections=[]),
    ],
    ids=["E1-qkvo", "transformer-vo", "lr-moe"],
)
def test_one_language_equals_dense(conf):
    """A hard prior of one language = the dense encoder holding that expert's weights.

    Independent experts (each differs from the others) and a router biased towards
    expert 0, so only a prior that really prunes, and dispatch to the right expert,
    reproduce the dense output."""
    moe = tiny(expert_init="independent", **conf).eval()
    expert = moe.num_experts - 1
    if moe.num_experts > 1:
        _strongly_prefer(moe, 0)
    moe.set_language_prior([expert])  # every frame -> the last expert
    dense = _dense_copy(moe, expert, **conf).eval()
    x, ilens = batch([60, 43])
    with torch.no_grad():
        out, olens, _ = moe(x, ilens)
        ref, ref_lens, _ = dense(x, ilens)
    assert torch.equal(olens, ref_lens)
    for i, n in enumerate(olens.tolist()):
        torch.testing.assert_close(out[i, :n], ref[i, :n], atol=1e-5, rtol=0)


def _strongly_prefer(enc, lang):
    """Make the router pick ``lang`` everywhere (by a large margin)."""
    router = enc.router
    last = router.output[-1] if router.router_type == "tdnn" else router.output
    with torch.no_grad():
        last.bias[lang] += 20.0


@pytest.mark.parametrize("router_type", ["tdnn", "linear"])
def test_pruning(router_type):
    enc = tiny(router_type=router_type).eval()
    x, ilens = batch([60, 43, 30])
    with torch.no_grad():
        base, _, base_aux = enc.forward_with_aux(x, ilens)

        enc.set_language_prior(range(len(LANGS)))  # allowed = all: a no-op
        out, _, aux = enc.forward_with_aux(x, ilens)
        assert torch.equal(out, base)
        assert torch.equal(aux["lid_logits"], base_aux["lid_logits"])

        _strongly_prefer(enc, 1)
        enc.set_language_prior([0, 2])  # hard: expert "mr" pruned
        aux = enc.forward_with_aux(x, ilens)[2]
        assert aux["route_frac_mr"] == 0
        kept = aux["route_frac_hi"] + aux["route_frac_ta"]
        assert kept.item() == pytest.approx(1.0)
        frames = torch.arange(aux["lid_logits"].size(1))
        valid = frames < aux["lid_lengths"].unsqueeze(1)
        assert (aux["lid_logits"].argmax(-1)[valid] != 1).all()
        assert torch.isfinite(aux["lid_logits"]).all()  # LID losses stay finite

        enc.set_language_prior([0, 2], mode="soft", soft_floor=0.1)
        soft = enc.forward_with_aux(x, ilens)[2]
        enc.set_language_prior(None)
        free = enc.forward_with_aux(x, ilens)[2]
    # Soft prior: logits of disallowed languages move by log(0.1), yet a strongly
    # preferred disallowed language is still chosen.
    delta = soft["lid_logits"] - free["lid_logits"]
    torch.testing.assert_close(delta[..., 1], torch.full_like(delta[..., 1], -2.302585))
    assert delta[..., [0, 2]].abs().max() == 0
    assert soft["route_frac_mr"] > 0.9
    with pytest.raises(ValueError, match="non-empty"):
        enc.set_language_prior([3])


@pytest.mark.parametrize("router_detach", [True, False])
def test_router_detach(router_detach):
    enc = tiny(router_detach=router_detach)
    x, ilens = batch([60, 43])
    aux = enc.forward_with_aux(x, ilens)[2]
    logits = aux["lid_logits"].reshape(-1, len(LANGS))
    target = torch.zeros(len(logits), dtype=torch.long)
    torch.nn.functional.cross_entropy(logits, target).backward()
    router = {id(p) for p in enc.router_parameters()}
    others = [p for p in enc.parameters() if id(p) not in router]
    assert len(router) + len(others) == len(list(enc.parameters()))
    assert all(p.grad is not None for p in enc.router_parameters())
    touched = [p for p in others if p.grad is not None and p.grad.abs().sum() > 0]
    if router_detach:
        assert touched == []
    else:
        assert any(p is enc.encoders[0].feed_forward.w_1.weight for p in touched)


def test_short_training_lowers_ctc_and_lid_loss():
    torch.manual_seed(0)
    enc = tiny()
    vocab = 8
    head = torch.nn.Linear(enc.output_size(), vocab)
    x, ilens = batch([80, 64, 72, 56], seed=1)
    langs = torch.tensor([0, 1, 2, 1])
    g = torch.Generator().manual_seed(2)
    targets = torch.randint(1, vocab, (4, 5), generator=g)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=3e-3)

    def losses():
        out, olens, aux = enc.forward_with_aux(x, ilens)
        log_probs = head(out).log_softmax(-1).transpose(0, 1)
        ctc = torch.nn.functional.ctc_loss(
            log_probs, targets, olens, torch.full((4,), 5), zero_infinity=True
        )
        logits = aux["lid_logits"]
        valid = torch.arange(logits.size(1)) < aux["lid_lengths"].unsqueeze(1)
        frame_langs = langs.unsqueeze(1).expand(-1, logits.size(1))
        lid = torch.nn.functional.cross_entropy(logits[valid], frame_langs[valid])
        return ctc, lid

    first = [v.item() for v in losses()]
    for _ in range(12):
        ctc, lid = losses()
        opt.zero_grad()
        (ctc + 0.3 * lid).backward()
        opt.step()
    last = [v.item() for v in losses()]
    assert last[0] < first[0] and last[1] < first[1], (first, last)


@pytest.mark.parametrize("expert_init, same", [("replicate", True), ("independent", False)])
def test_replicated_experts_make_the_untrained_moe_independent_of_routing(expert_init, same):
    enc = tiny(expert_init=expert_init).eval()
    x, ilens = batch([30, 22])
    outs = []
    for lang in range(len(LANGS)):
        enc.set_language_prior([lang])  # every frame to one expert
        outs.append(enc(x, ilens)[0])
    enc.set_language_prior(None)
    assert all(torch.allclose(outs[0], o, atol=1e-6) for o in outs[1:]) == same
    w = enc.encoders[-1].feed_forward.w_1.weight
    assert torch.equal(w[0], w[1]) == same


def test_router_activation_option():
    from espnet_plugins.asr.moe.language_router import LanguageRouter

    assert isinstance(LanguageRouter(16, 3).activation, torch.nn.SiLU)  # swish by default
    relu = LanguageRouter(16, 3, activation="relu")
    assert isinstance(relu.activation, torch.nn.ReLU) and isinstance(relu.output[1], torch.nn.ReLU)
    with pytest.raises(ValueError, match="router activation must be one of"):
        tiny(router_activation="tanh")


def test_routing_and_router_train_from_the_first_update():
    """The one schedule: routing by language and the LID-trained router from update 1."""
    enc = tiny(expert_init="independent").train()
    x, ilens = batch([30, 22, 26])
    out, _, aux = enc.forward_with_aux(x, ilens)
    fractions = [float(aux[f"route_frac_{lang}"]) for lang in LANGS]
    assert sum(fractions) == pytest.approx(1.0) and max(fractions) < 1.0  # routed, not on expert 0
    lid = torch.nn.functional.cross_entropy(aux["lid_logits"].reshape(-1, len(LANGS)),
                                            torch.zeros(aux["lid_logits"].shape[:2], dtype=torch.long).reshape(-1))
    (out.sum() + lid).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in enc.router_parameters())


def test_forward_changes_no_parameter_and_keeps_no_step_counter():
    """Before the warm-up state machine was removed, a training forward copied expert 0
    into every expert and advanced a step counter saved in the checkpoint."""
    enc = tiny(expert_init="independent").train()
    before = {k: v.clone() for k, v in enc.named_parameters()}
    x, ilens = batch([30, 22])
    for _ in range(3):
        enc(x, ilens)
    assert all(torch.equal(v, before[k]) for k, v in enc.named_parameters())
    names = set(enc.state_dict())
    assert not names & {"num_updates", "moe_state", "ctc_emission", "ctc_cer"}
    for removed in ("moe_start_step", "moe_start_ctc_emission", "moe_start_ctc_cer", "moe_start_ema",
                    "router_warmup"):  # the constructor describes the architecture only
        with pytest.raises(TypeError):
            tiny(**{removed: 1})


def test_checkpoint_with_the_old_warm_up_buffers_still_loads():
    enc = tiny()
    state = enc.state_dict()
    old = dict(state, num_updates=torch.tensor(800), moe_state=torch.tensor(2),
               ctc_emission=torch.tensor(0.7), ctc_cer=torch.tensor(0.4))
    fresh = tiny(expert_init="independent")
    fresh.load_state_dict(old)  # strict: the legacy keys are dropped, nothing else differs
    assert all(torch.equal(v, state[k]) for k, v in fresh.state_dict().items())


def test_espnet_nbest_average_of_two_checkpoints_decodes(tmp_path):
    """ESPnet's average_nbest_models (the recipe's decode default) on two real BLR-MoE
    checkpoints: the result loads strictly and decodes like the hand-made average."""
    from espnet2.main_funcs.average_nbest_models import average_nbest_models
    from espnet2.train.reporter import Reporter

    from espnet_plugins.inference.ctc_decoding import ctc_greedy
    from espnet_plugins.tasks.asr import MoEASRTask
    from test_presets import BASE_PRESET, TOKENS, batch as speech_batch

    tokens, langs = tmp_path / "tokens.txt", tmp_path / "langs"
    tokens.write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    langs.write_text("hi\nmr\nta\nte\n", encoding="utf-8")
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(BASE_PRESET.parent / "train_blr_moe.yaml"), "--token_list", str(tokens),
        "--lang_list", str(langs), "--normalize", "none", "--frontend_conf", "fs=16k"])
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    reporter = Reporter()
    states = []
    for epoch in (1, 2):
        reporter.set_epoch(epoch)
        model.train()
        loss, _, _ = model(**speech_batch(epoch))
        optim.zero_grad()
        loss.backward()
        optim.step()
        with reporter.observe("valid") as sub:
            sub.register({"loss": float(3 - epoch)})
            sub.next()
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        torch.save(model.state_dict(), tmp_path / f"{epoch}epoch.pth")
    average_nbest_models(tmp_path, reporter, [("valid", "loss", "min")], 2)
    averaged = torch.load(tmp_path / "valid.loss.ave_2best.pth")
    fresh = MoEASRTask.build_model(args).eval()
    fresh.load_state_dict(averaged)  # strict: no stray or missing keys
    by_hand = MoEASRTask.build_model(args).eval()
    by_hand.load_state_dict({k: (a + b) / 2 if a.is_floating_point() else b
                             for (k, a), b in zip(states[0].items(), states[1].values())})
    speech = speech_batch(0)
    with torch.no_grad():
        outs = [m.encode(speech["speech"], speech["speech_lengths"]) for m in (fresh, by_hand)]
    # the preset has intermediate CTC: encode returns (final output, intermediates)
    outs = [(o[0][0] if isinstance(o[0], tuple) else o[0], o[1]) for o in outs]
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-5, rtol=1e-5)
    hyps = [ctc_greedy(m.ctc.log_softmax(o[0]), o[1]) for m, o in zip((fresh, by_hand), outs)]
    assert hyps[0] == hyps[1]


def test_intermediate_ctc_taps_are_normalised_block_outputs():
    plain = tiny().eval()
    tapped = tiny(interctc_layer_idx=[1, 3]).eval()  # a shared block and an MoE block
    tapped.load_state_dict(plain.state_dict())
    x, ilens = batch([40, 32])
    out, olens, _ = plain(x, ilens)
    (out2, inter), olens2, _ = tapped(x, ilens)
    assert torch.equal(olens, olens2) and torch.allclose(out, out2, atol=1e-6)
    assert [i for i, _ in inter] == [1, 3] and all(h.shape == out.shape for _, h in inter)
    # the block-1 tap is block 1's output after the final LayerNorm
    seen = {}
    hook = tapped.encoders[0].register_forward_hook(lambda m, i, o: seen.setdefault("x", o))
    tapped(x, ilens)
    hook.remove()
    assert torch.allclose(inter[0][1], tapped.after_norm(seen["x"]), atol=1e-6)
    with pytest.raises(ValueError, match="interctc_layer_idx must name blocks 1..3"):
        tiny(interctc_layer_idx=[4])


def test_intermediate_ctc_loss_through_the_espnet_model(tmp_path):
    from espnet_plugins.tasks.asr import MoEASRTask
    from test_presets import LANGS as PLANGS, TOKENS, batch as model_batch

    (tmp_path / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    (tmp_path / "langs").write_text("\n".join(PLANGS) + "\n", encoding="utf-8")
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(Path(__file__).resolve().parents[1] / "conf" / "train_mini_smear_blr_moe.yaml"), "--token_list", str(tmp_path / "tokens.txt"),
        "--lang_list", str(tmp_path / "langs"), "--normalize", "none", "--frontend_conf", "fs=16k",
        "--preencoder", "none", "--encoder_conf", "interctc_layer_idx=[1]", "--model_conf", "interctc_weight=0.3"])
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args).train()
    loss, stats, _ = model(**model_batch(0))
    assert stats["loss_interctc_layer1"] > 0 and stats["ctc_emission"] is not None
    expected = 0.7 * stats["loss_ctc"] + 0.3 * stats["loss_interctc_layer1"] + 0.3 * stats["loss_lid"]
    assert torch.allclose(loss.sum(), expected + 0.01 * stats.get("loss_load_balance", 0), rtol=1e-4)


def test_utterance_routing_is_the_arg_max_of_the_mean_log_posterior_over_valid_frames():
    """Hand-made logits: utterance 1's valid frames lean to expert 1 on average though
    most frames say 0; its padded frames shout expert 2 (they must not count)."""
    from espnet_plugins.asr.moe.language_router import LanguageRouter

    router = LanguageRouter(4, 3, router_type="linear", granularity="utterance")
    logits = torch.zeros(2, 5, 3)
    logits[0, :2, 0] = 1.0  # frames 0-1: mildly expert 0
    logits[0, 2, 1] = 6.0  # frame 2: strongly expert 1 -> the mean log-posterior picks 1
    logits[0, 3:, 2] = 50.0  # padding
    logits[1, :, 2] = 1.0  # utterance 2 (all valid): expert 2
    valid = torch.arange(5) < torch.tensor([3, 5]).unsqueeze(1)
    assert router.select_experts(logits, valid).tolist() == [[1] * 5, [2] * 5]
    frame = LanguageRouter(4, 3, router_type="linear", granularity="frame")
    assert frame.select_experts(logits, valid)[0, :3].tolist() == [0, 0, 1]
    # A hard prior masks the arg-max even where a pruned language's logit is far ahead.
    frame.set_prior([0, 1])
    assert frame.select_experts(logits + 2e4 * (torch.arange(3) == 2), valid).max() <= 1


def test_router_learns_languages_above_chance_on_a_tiny_corpus():
    """Three "languages" whose frames carry a language-specific direction in the features
    (plus noise); joint CTC + λ·LID training through MoEASRModel for 25 updates. On fresh
    held-out utterances the model's lid_acc (majority of frame decisions) must be far above
    chance (1/3); before training it is not."""
    from espnet2.asr.ctc import CTC

    from espnet_plugins.asr.espnet_model import MoEASRModel

    torch.manual_seed(0)
    directions = torch.randn(len(LANGS), IDIM)
    vocab = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]

    def corpus(n, seed):
        g = torch.Generator().manual_seed(seed)
        lang = torch.arange(n) % len(LANGS)
        lengths = torch.randint(40, 64, (n,), generator=g)
        x = torch.randn(n, 64, IDIM, generator=g) + 1.5 * directions[lang].unsqueeze(1)
        x = x * (torch.arange(64) < lengths.unsqueeze(1)).unsqueeze(-1)
        text = torch.randint(2, 5, (n, 4), generator=g)
        return dict(speech=x, speech_lengths=lengths, text=text, text_lengths=torch.full((n,), 4),
                    lang=lang.unsqueeze(1), lang_lengths=torch.ones(n, dtype=torch.long))

    enc = tiny(router_channels=16, expert_init="independent")
    model = MoEASRModel(vocab_size=len(vocab), token_list=vocab, frontend=None, specaug=None, normalize=None,
                        preencoder=None, encoder=enc, postencoder=None, decoder=None, ctc=CTC(len(vocab), 16),
                        joint_network=None, ctc_weight=1.0, langs=LANGS, lid_weight=0.3)
    held_out = corpus(30, seed=99)

    def held_out_acc():
        model.eval()
        with torch.no_grad():
            return float(model(**held_out)[1]["lid_acc"])

    before = held_out_acc()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(25):
        model.train()
        loss, _, _ = model(**corpus(6, seed=step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_acc()
    assert after >= 0.8 and after > before + 0.2, (before, after)


def test_flat_router_keys_of_old_configs_map_into_router_conf(caplog):
    """Configs written before ``router_conf`` (flat ``router_*`` / ``routing`` keys) build
    the same router, with a deprecation warning naming the new keys; the state dict (and
    so every old checkpoint) is the same."""
    import logging

    new_conf = dict(router_type="tdnn", channels=8, kernel_sizes=[3, 3], dilations=[1, 2], activation="gelu",
                    linear_skip=True, conv_norm="batch_norm", dropout_rate=0.0, granularity="utterance")
    flat = dict(router_type="tdnn", router_channels=8, router_kernel_sizes=[3, 3], router_dilations=[1, 2],
                router_activation="gelu", router_linear_skip=True, router_conv_norm="batch_norm",
                router_dropout_rate=0.0, routing="utterance")
    kw = dict(input_size=8, output_size=16, attention_heads=2, linear_units=16, num_shared_blocks=1,
              num_moe_blocks=1, langs=LANGS, input_layer="linear")
    torch.manual_seed(0)
    new = BLRMoEEncoder(router_conf=new_conf, **kw)
    with caplog.at_level(logging.WARNING):
        torch.manual_seed(0)
        old = BLRMoEEncoder(**flat, **kw)
    assert "router_channels -> router_conf.channels" in caplog.text and "routing -> router_conf.granularity" in caplog.text
    assert old.state_dict().keys() == new.state_dict().keys()
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in old.state_dict().items())
    assert old.router.granularity == "utterance" and old.router.conv_norm == "batch_norm" and old.router.skip is not None
    # a flat key beside router_conf (a command-line override of a preset) wins
    assert BLRMoEEncoder(router_conf=dict(channels=8), router_channels=16, **kw).router.convs[0].out_channels == 16
    with pytest.raises(TypeError, match="router_chanels"):
        BLRMoEEncoder(router_chanels=8, **kw)
