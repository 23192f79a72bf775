"""Tests of the SMEAR-MoE projector (``preencoder: smear_moe``) and its baselines."""
import math

import pytest
import torch
import torch.nn.functional as F

from espnet_plugins.asr.preencoder.conv1d_downsampler import Conv1dDownsampler
from espnet_plugins.asr.preencoder.smear_projector import SmearProjector

torch.set_num_threads(1)

D_IN, HIDDEN, D_OUT, M = 8, 16, 6, 4


def make(variant="smear", seed=0, **kwargs):
    torch.manual_seed(seed)
    conf = dict(
        input_size=D_IN, output_size=D_OUT, hidden_size=HIDDEN, num_experts=M
    )
    conf.update(kwargs)
    return SmearProjector(variant=variant, **conf)


def batch(lengths=(9, 7, 4), seed=1):
    torch.manual_seed(seed)
    lengths = torch.tensor(lengths)
    return torch.randn(len(lengths), int(lengths.max()), D_IN), lengths


def expert(proj, m, x):
    """Expert ``m`` as a plain MLP on frames ``x`` [..., D_IN]."""
    e = proj.experts
    return F.relu(x @ e.w1[m] + e.b1[m]) @ e.w2[m] + e.b2[m]


def downsampled(proj, x, lengths):
    return proj.downsampler(x, lengths)


def test_construct_from_defaults_output_size_and_backward():
    proj = SmearProjector(input_size=D_IN)
    assert proj.output_size() == 256
    x, lengths = batch()
    torch.manual_seed(0)
    y, olens = proj(x, lengths)
    assert y.shape == (3, 9, 256) and olens.tolist() == lengths.tolist()
    torch.manual_seed(0)
    y2, olens2, aux = proj.forward_with_aux(x, lengths)
    assert torch.equal(y2, y) and torch.equal(olens2, olens)
    (y.sum() + aux["load_balance"]).backward()
    assert all(p.grad is not None for p in proj.parameters())
    assert set(aux) == {"load_balance", "gate_entropy", "gate"} | {
        f"gate_mean_e{m}" for m in range(4)
    }
    assert aux["gate"].shape == (3, 4) and not aux["gate"].requires_grad


def test_smear_final_linear_is_gate_weighted_sum_of_expert_linears():
    """The merge is linear: W̄2 h + b̄2 = Σ_m ḡ_m (W2_m h + b2_m) for the same h."""
    proj = make().eval()
    x, lengths = batch()
    y, _, aux = proj.forward_with_aux(x, lengths)
    g, e = aux["gate"], proj.experts
    xd, _ = downsampled(proj, x, lengths)
    w1 = torch.einsum("bm,mio->bio", g, e.w1)
    hidden = F.relu(torch.bmm(xd, w1) + (g @ e.b1)[:, None])
    naive = sum(
        g[:, m, None, None] * (hidden @ e.w2[m] + e.b2[m]) for m in range(M)
    )
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(y[b, :n], naive[b, :n], atol=1e-5, rtol=1e-5)


def test_smear_full_mlp_uses_explicitly_merged_weights():
    proj = make().eval()
    x, lengths = batch()
    y, _, aux = proj.forward_with_aux(x, lengths)
    g, e = aux["gate"], proj.experts
    xd, _ = downsampled(proj, x, lengths)
    for b, n in enumerate(lengths.tolist()):
        merged = [
            sum(g[b, m] * p[m] for m in range(M)) for p in (e.w1, e.b1, e.w2, e.b2)
        ]
        w1, b1, w2, b2 = merged
        expected = F.relu(xd[b, :n] @ w1 + b1) @ w2 + b2
        torch.testing.assert_close(y[b, :n], expected, atol=1e-5, rtol=1e-5)


def test_gate_is_mean_softmax_over_valid_frames_only():
    proj = make().eval()
    x, lengths = batch()
    gate = proj.forward_with_aux(x, lengths)[2]["gate"]
    xd, _ = downsampled(proj, x, lengths)
    for b, n in enumerate(lengths.tolist()):
        expected = torch.softmax(proj.gate.net(xd[b, :n]), dim=-1).mean(0)
        torch.testing.assert_close(gate[b], expected)


def test_smear_every_expert_gets_gradient():
    proj = make()
    x, lengths = batch()
    y, _ = proj(x, lengths)
    y.pow(2).sum().backward()
    for p in (proj.experts.w1, proj.experts.b1, proj.experts.w2, proj.experts.b2):
        assert all(p.grad[m].abs().sum() > 0 for m in range(M))
    assert proj.gate.net.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("top_k", [1, 2])
def test_hard_topk_only_selected_experts_get_gradient(top_k):
    proj = make("hard_topk", top_k=top_k, topk_renormalize=False)
    x, lengths = batch(lengths=(9,))  # one utterance selects top_k < M experts
    y, _, aux = proj.forward_with_aux(x, lengths)
    y.pow(2).sum().backward()
    selected = set(aux["gate"][0].topk(top_k).indices.tolist())
    assert len(selected) == top_k
    for m in range(M):
        got_grad = bool(proj.experts.w1.grad[m].abs().sum() > 0)
        assert got_grad == (m in selected), (m, selected)
    # Without renormalisation the task loss trains the gate through ḡ.
    assert proj.gate.net.weight.grad.abs().sum() > 0


def test_hard_topk_defaults_train_the_gate():
    """With the defaults (top_k 1) the task loss reaches the gate; with renormalisation
    the single selected weight is exactly 1 and the gate gets no task gradient."""
    proj = make("hard_topk")
    x, lengths = batch()
    proj(x, lengths)[0].pow(2).sum().backward()
    trained = float(proj.gate.net.weight.grad.abs().sum())
    renorm = make("hard_topk", topk_renormalize=True)
    renorm(x, lengths)[0].pow(2).sum().backward()
    # g / g: zero up to float rounding
    assert float(renorm.gate.net.weight.grad.abs().sum()) < 1e-4 * trained


def test_hard_topk_output_is_renormalised_gate_weighted_expert_sum():
    proj = make("hard_topk", top_k=2, topk_renormalize=True).eval()
    x, lengths = batch()
    y, _, aux = proj.forward_with_aux(x, lengths)
    xd, _ = downsampled(proj, x, lengths)
    top, idx = aux["gate"].topk(2, dim=1)
    weight = top / top.sum(1, keepdim=True)
    for b, n in enumerate(lengths.tolist()):
        expected = sum(
            weight[b, j] * expert(proj, int(idx[b, j]), xd[b, :n]) for j in range(2)
        )
        torch.testing.assert_close(y[b, :n], expected, atol=1e-5, rtol=1e-5)


def test_dense_ensemble_is_mean_of_all_experts():
    proj = make("dense_ensemble").eval()
    assert proj.gate is None
    x, lengths = batch()
    y, _, aux = proj.forward_with_aux(x, lengths)
    xd, _ = downsampled(proj, x, lengths)
    expected = sum(expert(proj, m, xd) for m in range(M)) / M
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(y[b, :n], expected[b, :n], atol=1e-5, rtol=1e-5)
    assert aux == {}
    assert proj.num_params_active == proj.num_params_total


def test_monolithic_is_a_plain_mlp():
    proj = make("monolithic").eval()
    assert proj.num_experts == 1 and proj.gate is None
    e = proj.experts
    mlp = torch.nn.Sequential(
        torch.nn.Linear(D_IN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, D_OUT)
    )
    with torch.no_grad():
        mlp[0].weight.copy_(e.w1[0].T)
        mlp[0].bias.copy_(e.b1[0])
        mlp[2].weight.copy_(e.w2[0].T)
        mlp[2].bias.copy_(e.b2[0])
    x, lengths = batch()
    y, _ = proj(x, lengths)
    xd, _ = downsampled(proj, x, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(y[b, :n], mlp(xd[b, :n]), atol=1e-5, rtol=1e-5)
    downsampler = sum(p.numel() for p in proj.downsampler.parameters())
    mlp_size = sum(p.numel() for p in mlp.parameters())
    assert proj.num_params_total == proj.num_params_active == downsampler + mlp_size


@pytest.mark.parametrize(
    "variant", ["smear", "hard_topk", "monolithic", "dense_ensemble"]
)
@pytest.mark.parametrize("rate", [1, 2, 3])
@pytest.mark.parametrize("pad", ["zeros", "noise"])
def test_padding_invariance(variant, rate, pad):
    """An utterance alone and inside a padded batch gives the same ḡ and output."""
    proj = make(variant, downsample_rate=rate, gate_type="mlp").eval()
    torch.manual_seed(3)
    short = torch.randn(1, 7, D_IN)
    padded = torch.randn(2, 13, D_IN)
    padded[0, 7:] = 0.0 if pad == "zeros" else torch.randn(6, D_IN) * 10
    padded[0, :7] = short[0]
    lengths = torch.tensor([7, 13])
    y_alone, n_alone, aux_alone = proj.forward_with_aux(short, torch.tensor([7]))
    g_alone = aux_alone.get("gate")
    y_batch, n_batch, aux_batch = proj.forward_with_aux(padded, lengths)
    n = int(n_alone[0])
    assert n == int(n_batch[0]) == 7 // rate
    torch.testing.assert_close(y_batch[0, :n], y_alone[0, :n], atol=1e-5, rtol=0)
    assert torch.all(y_batch[0, n:] == 0)
    if g_alone is not None:
        torch.testing.assert_close(aux_batch["gate"][0], g_alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("rate", [1, 2, 3, 4])
def test_downsampler_lengths_match_conv_output_sizes(rate):
    down = Conv1dDownsampler(D_IN, rate)
    lengths = torch.tensor([17, 13, 8, 5, 4])  # odd and even, some not multiples
    x = torch.randn(len(lengths), 17, D_IN)
    y, olens = down(x, lengths)
    assert y.size(1) == down.output_lengths(lengths.max()).item()
    for b, n in enumerate(lengths.tolist()):
        alone = down.reduce(down.smooth(x[b : b + 1, :n].transpose(1, 2)))
        assert olens[b].item() == alone.size(2) == n // rate


def test_downsampler_rejects_too_short_utterance():
    down = Conv1dDownsampler(D_IN, 4)
    with pytest.raises(ValueError, match="shorter than downsample_rate=4"):
        down(torch.randn(2, 6, D_IN), torch.tensor([6, 3]))


@pytest.mark.parametrize("rate", [1, 2, 3])
def test_downsampler_values_equal_plain_conv1d_layers_on_each_utterance_alone(rate):
    """Reference: nn.Conv1d(k=3, pad=1) -> ReLU -> nn.Conv1d(k=r, stride=r) -> ReLU on the
    utterance alone (no padding); the batch has loud noise in its padded frames."""
    down = Conv1dDownsampler(D_IN, rate)
    ref = torch.nn.Sequential(torch.nn.Conv1d(D_IN, D_IN, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv1d(D_IN, D_IN, rate, stride=rate), torch.nn.ReLU())
    with torch.no_grad():
        for conv, mine in ((ref[0], down.smooth), (ref[2], down.reduce)):
            conv.weight.copy_(mine.weight)
            conv.bias.copy_(mine.bias)
    torch.manual_seed(4)
    lengths = torch.tensor([13, 8, 5])
    x = torch.randn(3, 13, D_IN)
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = torch.randn(13 - n, D_IN) * 10
    y, olens = down(x, lengths)
    assert y.shape == (3, 13 // rate, D_IN)
    for b, n in enumerate(lengths.tolist()):
        expected = ref(x[b, :n].T[None])[0].T  # [n // r, D_IN]
        assert olens[b].item() == expected.size(0) == n // rate
        torch.testing.assert_close(y[b, : n // rate], expected, atol=1e-5, rtol=1e-5)
        assert torch.all(y[b, n // rate :] == 0)
    assert bool((y > 0).any())  # not the all-zero output of a dead ReLU


# A hand-written gate ḡ for 3 utterances and M = 4 experts; its batch mean P_m is
# (0.4, 1/3, 2/15, 2/15).
GATE = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.4, 0.2, 0.2, 0.2]]


def test_load_balance_losses_follow_their_formulas():
    """mse = mean_m (P_m - 1/M)²; switch = M Σ_m f_m P_m with f_m the share of routing
    slots (utterances x top_k) sent to m; gate_entropy = mean_b H(ḡ_b)."""
    P = [sum(col) / 3 for col in zip(*GATE)]
    gate = torch.tensor(GATE)
    mse = make(load_balance_type="mse")._gate_stats(gate, torch.tensor([[0], [1], [0]]))
    assert mse["load_balance"].item() == pytest.approx(sum((p - 0.25) ** 2 for p in P) / 4)
    assert mse["load_balance"].item() == pytest.approx(0.0141667, abs=1e-6)
    entropy = sum(-sum(g * math.log(g) for g in row) for row in GATE) / 3
    assert mse["gate_entropy"].item() == pytest.approx(entropy)
    assert [mse[f"gate_mean_e{m}"].item() for m in range(M)] == pytest.approx(P)
    switch = make(load_balance_type="switch")
    one = switch._gate_stats(gate, torch.tensor([[0], [1], [0]]))  # f = (2/3, 1/3, 0, 0)
    assert one["load_balance"].item() == pytest.approx(4 * (2 / 3 * P[0] + 1 / 3 * P[1]))
    two = switch._gate_stats(gate, torch.tensor([[0, 1], [1, 0], [0, 2]]))  # f = (3, 2, 1, 0) / 6
    assert two["load_balance"].item() == pytest.approx(4 * (3 * P[0] + 2 * P[1] + P[2]) / 6)


@pytest.mark.parametrize("variant, top_k", [("smear", 1), ("hard_topk", 2)])
def test_forward_reports_the_balance_loss_of_its_own_gate_and_routing(variant, top_k):
    """In forward, f_m comes from the arg-max of ḡ (smear) or its top_k (hard_topk)."""
    proj = make(variant, load_balance_type="switch", top_k=top_k)
    x, lengths = batch()
    aux = proj.forward_with_aux(x, lengths)[2]
    g = aux["gate"]
    routed = g.topk(top_k, dim=1).indices.flatten().tolist()
    f = [routed.count(m) / len(routed) for m in range(M)]
    P = g.mean(0).tolist()
    assert aux["load_balance"].item() == pytest.approx(M * sum(a * b for a, b in zip(f, P)), rel=1e-5)


@pytest.mark.parametrize("variant", ["smear", "hard_topk"])
def test_load_balance_mse_zero_iff_uniform(variant):
    proj = make(variant, load_balance_type="mse")
    uniform = torch.full((3, M), 1.0 / M)
    routed = torch.zeros(3, 1, dtype=torch.long)
    assert proj._gate_stats(uniform, routed)["load_balance"].item() == 0.0
    # Balanced on average over the batch is balanced, too (the authors' definition).
    balanced = torch.eye(M)
    assert proj._gate_stats(balanced, torch.arange(M)[:, None])["load_balance"] == 0
    skewed = torch.softmax(torch.randn(3, M) * 3, dim=-1)
    assert proj._gate_stats(skewed, routed)["load_balance"].item() > 0
    stats = proj._gate_stats(uniform, routed)
    assert stats["gate_entropy"].item() == pytest.approx(math.log(M))
    assert stats["gate_mean_e0"].item() == pytest.approx(1.0 / M)


def test_load_balance_switch_is_one_when_balanced_and_larger_when_collapsed():
    proj = make(load_balance_type="switch")
    balanced = torch.eye(M)
    stats = proj._gate_stats(balanced, torch.arange(M)[:, None])
    assert stats["load_balance"].item() == pytest.approx(1.0)
    collapsed = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * M)
    routed = torch.zeros(M, 1, dtype=torch.long)
    assert proj._gate_stats(collapsed, routed)["load_balance"].item() == pytest.approx(
        M * 0.7
    )


def test_load_balance_trains_the_gate():
    proj = make(load_balance_type="switch")
    x, lengths = batch()
    proj.forward_with_aux(x, lengths)[2]["load_balance"].backward()
    assert proj.gate.net.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(variant="sparse"), "variant must be one of"),
        (dict(variant="hard_topk", top_k=5), "top_k must be in"),
        (dict(load_balance_type="aux"), "load_balance_type must be one of"),
        (dict(activation="elu"), "activation must be one of"),
        (dict(gate_type="attention"), "gate_type must be 'linear' or 'mlp'"),
    ],
)
def test_bad_config_raises_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


# ------------------------------------------------------------ gate conditioning
LANGS4 = ["hi", "mr", "ta", "te"]
FAMILIES = {"hi": "indo_aryan", "mr": "indo_aryan", "ta": "dravidian", "te": "dravidian"}


def test_gate_conditioning_starts_as_a_no_op_and_biases_the_gate_per_language():
    plain = make()
    cond = make(langs=LANGS4, gate_conditioning="language").eval()
    plain.eval()
    x, lengths = batch()
    labels = torch.tensor([0, 2, -1])
    assert torch.allclose(cond.forward_with_aux(x, lengths, labels)[0], plain(x, lengths)[0])  # zero table
    with torch.no_grad():
        cond.condition_bias.weight[0] = torch.tensor([6.0, 0, 0, 0])  # hi -> expert 0
        cond.condition_bias.weight[2] = torch.tensor([0, 0, 6.0, 0])  # ta -> expert 2
    gate = cond.forward_with_aux(x, lengths, labels)[2]["gate"]
    plain_gate = plain.forward_with_aux(x, lengths)[2]["gate"]
    assert gate[0].argmax() == 0 and gate[0, 0] > 0.9 and gate[1].argmax() == 2 and gate[1, 2] > 0.9
    assert torch.allclose(gate[2], plain_gate[2])  # -1 = unknown row (still zero)
    # Without labels the condition is "unknown".
    assert torch.allclose(cond.forward_with_aux(x, lengths)[2]["gate"], plain_gate)


def test_family_conditioning_shares_a_row_and_follows_a_language_prior():
    proj = make(langs=LANGS4, gate_conditioning="family", language_families=FAMILIES).eval()
    assert proj.condition_names == ["dravidian", "indo_aryan"] and proj.condition_bias.num_embeddings == 3
    with torch.no_grad():
        proj.condition_bias.weight[1] = torch.tensor([0, 6.0, 0, 0])  # indo_aryan -> expert 1
    x, lengths = batch()
    proj.set_language_prior([0, 1])  # hi, mr: one family -> conditioned on it
    assert (proj.forward_with_aux(x, lengths)[2]["gate"].argmax(1) == 1).all()
    proj.set_language_prior([0, 2])  # two families -> unknown
    unknown = proj.forward_with_aux(x, lengths)[2]["gate"]
    proj.set_language_prior(None)
    free = proj.forward_with_aux(x, lengths)[2]["gate"]
    assert torch.allclose(unknown, free) and not (free.argmax(1) == 1).all()


def test_condition_dropout_replaces_labels_by_unknown_in_training_only():
    proj = make(langs=LANGS4, gate_conditioning="language", condition_dropout=0.5)
    with torch.no_grad():
        proj.condition_bias.weight[:4] = 8 * torch.eye(4)
    x = torch.randn(200, 5, D_IN)
    lengths = torch.full((200,), 5)
    labels = torch.zeros(200, dtype=torch.long)
    gate = proj.train().forward_with_aux(x, lengths, labels)[2]["gate"]
    share = (gate[:, 0] > 0.9).float().mean()
    assert 0.3 < share < 0.7
    gate = proj.eval().forward_with_aux(x, lengths, labels)[2]["gate"]
    assert (gate[:, 0] > 0.9).all()


def test_model_passes_utterance_languages_to_the_gate():
    from espnet2.asr.ctc import CTC
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

    from espnet_plugins.asr.espnet_model import MoEASRModel

    torch.manual_seed(0)
    proj = make(langs=LANGS4, gate_conditioning="language", condition_dropout=0.0)
    vocab = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    model = MoEASRModel(vocab_size=5, token_list=vocab, frontend=None, specaug=None, normalize=None,
                        preencoder=proj, encoder=TransformerEncoder(D_OUT, output_size=8, attention_heads=2,
                                                                    linear_units=8, num_blocks=1,
                                                                    input_layer="linear"),
                        postencoder=None, decoder=None, ctc=CTC(5, 8), joint_network=None, ctc_weight=1.0,
                        langs=LANGS4)
    x, lengths = batch()
    loss, _, _ = model(speech=x, speech_lengths=lengths, text=torch.tensor([[2, 3], [3, -1], [2, -1]]),
                       text_lengths=torch.tensor([2, 1, 1]), lang=torch.tensor([[1], [3], [1]]),
                       lang_lengths=torch.tensor([1, 1, 1]))
    loss.backward()
    rows_with_grad = proj.condition_bias.weight.grad.abs().sum(1).nonzero().flatten().tolist()
    assert rows_with_grad == [1, 3]  # mr and te, the batch's languages


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gate_conditioning="speaker", langs=LANGS4), "gate_conditioning must be one of"),
        (dict(gate_conditioning="language"), "gate_conditioning needs the languages"),
        (dict(gate_conditioning="language", langs=LANGS4, variant="monolithic"), "needs a gate"),
        (dict(gate_conditioning="family", langs=LANGS4, language_families={"hi": "ia"}),
         r"no family for \['mr', 'ta', 'te'\]"),
    ],
)
def test_bad_gate_conditioning_raises_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


@pytest.mark.parametrize("variant", ["smear", "monolithic", "dense_ensemble", "hard_topk"])
def test_residual_projector_starts_as_identity_then_learns(variant):
    """``residual: true``: y = x + projector(x) with a zero output layer at init.

    Gated variants get a language-conditioned gate biased so that the three utterances
    pick three different experts: hard_topk must then train exactly those three."""
    gated = variant in ("smear", "hard_topk")
    cond = dict(langs=["hi", "mr", "ta"], gate_conditioning="language", condition_dropout=0.0) if gated else {}
    proj = make(variant, output_size=D_IN, residual=True, **cond)
    x, lengths = batch()
    if gated:
        with torch.no_grad():
            proj.condition_bias.weight[:3, :3] += 20.0 * torch.eye(3)  # language i -> expert i
    y, olens, aux = proj.forward_with_aux(x, lengths, torch.tensor([2, 0, 1]) if gated else None)
    valid = (torch.arange(x.size(1)) < lengths.unsqueeze(1)).unsqueeze(2)
    assert olens.tolist() == lengths.tolist()
    torch.testing.assert_close(y, x * valid, rtol=0, atol=0)
    if gated:
        assert aux["gate"].argmax(1).tolist() == [2, 0, 1]
    # The zero output layer still gets gradient (h is not zero), so the projector
    # leaves the identity after one step; for smear every expert's w2 moves.
    (y * torch.randn_like(y)).sum().backward()
    grad = proj.experts.w2.grad.flatten(1).abs().sum(1)
    trained = {"monolithic": [0], "hard_topk": [0, 1, 2]}.get(variant, list(range(M)))
    assert (grad > 0).nonzero().flatten().tolist() == trained


@pytest.mark.parametrize(
    "kwargs",
    [dict(output_size=D_IN, downsample_rate=2), dict(output_size=D_OUT)],
)
def test_residual_needs_rate_one_and_equal_sizes(kwargs):
    with pytest.raises(ValueError, match="residual: true adds the projector's input"):
        make(residual=True, **kwargs)


def test_validation_conditions_the_gate_like_decoding_not_on_utt2lang():
    """In eval mode (ESPnet's validation) the gate gets the decoding condition ("unknown"
    without a prior), so the validation loss does not depend on the oracle labels."""
    from espnet2.asr.ctc import CTC
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

    from espnet_plugins.asr.espnet_model import MoEASRModel

    torch.manual_seed(0)
    proj = make(langs=LANGS4, gate_conditioning="language", condition_dropout=0.0)
    with torch.no_grad():
        proj.condition_bias.weight[:4] = 6 * torch.eye(4)  # a trained table: language -> expert
    vocab = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    model = MoEASRModel(vocab_size=5, token_list=vocab, frontend=None, specaug=None, normalize=None,
                        preencoder=proj, encoder=TransformerEncoder(D_OUT, output_size=8, attention_heads=2,
                                                                    linear_units=8, num_blocks=1,
                                                                    input_layer="linear"),
                        postencoder=None, decoder=None, ctc=CTC(5, 8), joint_network=None, ctc_weight=1.0,
                        langs=LANGS4).eval()
    x, lengths = batch()
    text = dict(text=torch.tensor([[2, 3], [3, -1], [2, -1]]), text_lengths=torch.tensor([2, 1, 1]))
    ones = torch.tensor([1, 1, 1])
    with torch.no_grad():
        decode_gate = model.encode_with_aux(x, lengths)[2]["gate"]  # Speech2Text: no labels, no prior
        losses, gates = [], []
        for lang in ([[0], [0], [0]], [[3], [2], [1]]):
            loss, _, _ = model(speech=x, speech_lengths=lengths, lang=torch.tensor(lang), lang_lengths=ones, **text)
            losses.append(loss)
            gates.append(model.encode_with_aux(x, lengths, torch.tensor(lang))[2]["gate"])
        no_lang, _, _ = model(speech=x, speech_lengths=lengths, **text)
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(losses[0], no_lang)
    torch.testing.assert_close(gates[0], decode_gate)
    torch.testing.assert_close(gates[1], decode_gate)
    # Training still conditions on the labels.
    model.train()
    gate = model.encode_with_aux(x, lengths, torch.tensor([[0], [2], [3]]))[2]["gate"]
    assert gate.argmax(1).tolist() == [0, 2, 3]
