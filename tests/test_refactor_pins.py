"""Characterization pins of the issue-33 refactor: today's numbers must not move.

``tests/data/refactor_pins.pt`` holds, for each model family (the real presets'
architectures shrunk to tiny sizes, weights perturbed so that experts differ), the
``config.yaml`` and state dict of a model built by the code of commit d600a35, one
unevenly padded batch, and what that code computed on it: the training loss and every
statistic, the validation statistics, encoder output, CTC log-probs, router logits and
expert choice, SMEAR gate, and :class:`Speech2Text`'s greedy result. The test loads each
checkpoint the way decoding does (``config.yaml`` + ``.pth``), so it also proves that
checkpoints made before the refactor (flat ``encoder_conf.router_*`` keys, state dict
names of d600a35) still load and decode identically.

Regenerate only on purpose (a deliberate behaviour change):
``python tests/test_refactor_pins.py`` (writes the fixture with the current code).
"""
import copy
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "refactor_pins.pt"
LANGS = ["hi", "mr", "ta", "te"]
TOKENS = ["<blank>", "<unk>", "<space>"] + list("abcdefghij") + ["<sos/eos>"]
TINY_CONFORMER = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=4, cnn_module_kernel=5,
                      dropout_rate=0.0, positional_dropout_rate=0.0, attention_dropout_rate=0.0)
TINY_BLR = dict(output_size=16, attention_heads=2, linear_units=32, num_shared_blocks=2, num_moe_blocks=2,
                cnn_module_kernel=5, dropout_rate=0.0, positional_dropout_rate=0.0, attention_dropout_rate=0.0,
                router_conf=dict(dropout_rate=0.0))
TINY_PROJ = dict(input_size=20, output_size=20, hidden_size=16, dropout=0.0)
# family -> (preset, preencoder_conf overrides or None, encoder overrides)
# TDNN families keep the LayerNorm router the pins were computed with (d600a35's presets).
FAMILIES = {
    "dense": ("train_dense_conformer", None, TINY_CONFORMER),
    "lr_moe_utt": ("train_lr_moe", None, dict(TINY_BLR, router_conf=dict(dropout_rate=0.0, granularity="utterance"))),
    "blr_moe": ("train_blr_moe", None, dict(TINY_BLR, router_conf=dict(dropout_rate=0.0, channels=8, conv_norm="layer_norm"))),
    "blr_moe_qkvo": ("train_blr_moe_attn_qkvo", None, dict(TINY_BLR, router_conf=dict(dropout_rate=0.0, channels=8, conv_norm="layer_norm"))),
    "proj_monolithic": ("train_projector_monolithic", TINY_PROJ, TINY_CONFORMER),
    "proj_dense_ensemble": ("train_projector_dense_ensemble", TINY_PROJ, TINY_CONFORMER),
    "proj_hard_topk": ("train_projector_hard_topk", dict(TINY_PROJ, top_k=2), TINY_CONFORMER),
    "smear_conformer": ("train_smear_conformer", TINY_PROJ, TINY_CONFORMER),
    "smear_conditioned": ("train_smear_conformer", dict(TINY_PROJ, gate_conditioning="language",
                                                        condition_dropout=0.0), TINY_CONFORMER),
    "smear_blr_moe": ("train_smear_blr_moe", TINY_PROJ, dict(TINY_BLR, router_conf=dict(dropout_rate=0.0,
                                                                                      channels=8, conv_norm="layer_norm"))),
}


def batch():
    """3 utterances of noise, 0.5 / 0.4 / 0.3 s (unevenly padded), random text and languages."""
    g = torch.Generator().manual_seed(7)
    lengths = torch.tensor([8000, 6400, 4800])
    speech = 0.1 * torch.randn(3, 8000, generator=g)
    for i, n in enumerate(lengths.tolist()):
        speech[i, n:] = 0.0
    text_lengths = torch.tensor([5, 3, 2])
    text = torch.randint(3, len(TOKENS) - 1, (3, 5), generator=g)
    for i, n in enumerate(text_lengths.tolist()):
        text[i, n:] = -1
    return dict(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths,
                lang=torch.tensor([[0], [2], [1]]), lang_lengths=torch.ones(3, dtype=torch.long))


def observe(model, s2t, b):
    """Everything pinned, as a flat dict of tensors / lists (today's API in one place)."""
    out = {}
    from espnet_plugins.train.trainer import NonFiniteGuard

    model.train()
    torch.manual_seed(0)
    with NonFiniteGuard.around(model, model):  # the trainer's wrapping of the training forward
        loss, stats, weight = model(**b)
    out["train_loss"] = loss.detach()
    out.update({f"train_{k}": v.detach() for k, v in stats.items() if v is not None})
    model.eval()
    with torch.no_grad():
        loss, stats, weight = model(**b)
        out["valid_loss"] = loss.detach()
        out.update({f"valid_{k}": v.detach() for k, v in stats.items() if v is not None})
        enc, enc_lens, aux, gate = encode_with_aux(model, b["speech"], b["speech_lengths"])
        valid = torch.arange(enc.size(1))[None, :] < enc_lens[:, None]
        out["encoder_out"] = enc * valid[..., None]
        out["encoder_out_lens"] = enc_lens
        out["ctc_log_probs"] = model.ctc.log_softmax(enc) * valid[..., None]
        if "lid_logits" in aux:
            out["lid_logits"] = aux["lid_logits"] * valid[..., None]
        if "expert_index" in aux:
            out["expert_index"] = aux["expert_index"].masked_fill(~valid, -1)
        if gate is not None:
            out["smear_gate"] = gate
    for i, r in enumerate(s2t.batch(b["speech"], b["speech_lengths"])):
        out[f"hyp{i}"] = r.token_ids
        out[f"lang{i}"] = r.lang
        for field in ("lang_posterior", "route_frac", "smear_gate"):
            if getattr(r, field) is not None:
                out[f"{field}{i}"] = torch.tensor(getattr(r, field))
    return out


def encode_with_aux(model, speech, lengths):
    """(encoder output, lengths, aux dict, SMEAR gate or None) of an eval-mode encode."""
    enc, enc_lens, aux = model.encode_with_aux(speech, lengths)
    if isinstance(enc, tuple):
        enc = enc[0]
    return enc, enc_lens, aux, aux.get("gate")


def write_exp(tmp: Path, config: dict, state: dict):
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "config.yaml", "w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(config, f, indent=4, sort_keys=False)
    torch.save(state, tmp / "model.pth")
    return tmp / "config.yaml", tmp / "model.pth"


def load(tmp: Path, config: dict, state: dict):
    from espnet_plugins.inference.speech2text import Speech2Text

    s2t = Speech2Text(*map(str, write_exp(tmp, config, state)))
    return s2t.model, s2t


def build(family: str, tmp: Path):
    """(config dict, perturbed state dict) of a fresh tiny model of ``family``."""
    from espnet_plugins.tasks.asr import MoEASRTask

    preset, proj, enc = FAMILIES[family]
    conf = yaml.safe_load((ROOT / "conf" / f"{preset}.yaml").read_text())
    enc = dict(enc)
    conf["encoder_conf"].setdefault("router_conf", {}).update(enc.pop("router_conf", {}))
    conf["encoder_conf"].update(enc)
    if proj is not None:
        conf["preencoder_conf"].update(proj)
    conf["specaug"] = None
    conf["frontend_conf"].update(n_fft=256, win_length=256, hop_length=128, n_mels=20)
    (tmp / "train.yaml").write_text(yaml.safe_dump(conf))
    (tmp / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    (tmp / "lang_list").write_text("\n".join(LANGS) + "\n")
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(tmp / "train.yaml"), "--token_list", str(tmp / "tokens.txt"), "--lang_list",
        str(tmp / "lang_list"), "--token_type", "char", "--normalize", "none", "--frontend_conf", "fs=16k"])
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args)
    with torch.no_grad():  # experts, zero-inits and routers all differ from their start
        for name, p in model.named_parameters():
            scale = 2.0 if ".router." in name else 0.3
            p.add_(scale * p.std().nan_to_num(0.1).clamp(min=0.05) * torch.randn_like(p))
    return copy.deepcopy(vars(args)), {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(got, want, name):
    assert got.keys() == want.keys(), f"{name}: keys {sorted(set(got) ^ set(want))} differ"
    for key, w in want.items():
        g = got[key]
        if isinstance(w, torch.Tensor):
            assert g.shape == w.shape and g.dtype == w.dtype, (name, key, g, w)
            if w.dtype.is_floating_point:
                torch.testing.assert_close(g, w, rtol=1e-4, atol=2e-5, msg=lambda m: f"{name} {key}: {m}")
            else:
                assert torch.equal(g, w), (name, key, g, w)
        else:
            assert g == w, (name, key, g, w)


@pytest.fixture(scope="module")
def pins():
    return torch.load(FIXTURE, weights_only=False)


def test_fixture_covers_every_family(pins):
    assert set(pins["families"]) == set(FAMILIES)
    expected = pins["families"]
    assert "lid_logits" in expected["blr_moe"]["expected"] and "smear_gate" in expected["smear_blr_moe"]["expected"]
    for family in ("blr_moe", "blr_moe_qkvo", "smear_blr_moe"):  # the pins see which expert a frame took
        assert len(set(expected[family]["expected"]["expert_index"].flatten().tolist()) - {-1}) > 1, family


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_old_checkpoint_loads_and_computes_the_pinned_numbers(family, pins, tmp_path):
    entry = pins["families"][family]
    model, s2t = load(tmp_path, entry["config"], entry["state"])
    assert_same(observe(model, s2t, pins["batch"]), entry["expected"], family)


def regenerate():
    import tempfile

    pins = {"batch": batch(), "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            work = Path(tmp) / family
            work.mkdir()
            config, state = build(family, work)
            model, s2t = load(work / "exp", config, state)
            pins["families"][family] = dict(config=config, state=state, expected=observe(model, s2t, pins["batch"]))
    FIXTURE.parent.mkdir(exist_ok=True)
    torch.save(pins, FIXTURE)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # noqa: F401  (offline, one thread)

    regenerate()
