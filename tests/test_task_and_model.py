"""ESPnet integration: registration, config printing, language labels, aux losses."""
import io
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.abs_encoder import AbsEncoder

from espnet_plugins.asr.espnet_model import MoEASRModel
from espnet_plugins.train.router_only import freeze_all_but_router, router_only_train_mode
from espnet_plugins.tasks.asr import LanguageLabelPreprocessor, MoEASRTask

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _print_config(monkeypatch, *argv):
    # ESPnet's print_config re-parses sys.argv (not main's cmd) and writes to the stdout
    # bound at import time, so drive it the way the CLI does.
    monkeypatch.setattr(sys, "argv", ["asr_train", "--print_config", *argv])
    buf = io.StringIO()
    MoEASRTask.print_config(file=buf)
    return yaml.safe_load(buf.getvalue())


def test_print_config_has_our_model_and_lang_options(monkeypatch):
    conf = _print_config(monkeypatch, "--encoder", "conformer")
    assert conf["model"] == "moe_espnet"
    # lid_weight: None = 0.3 with a router; set explicitly on a model without one, it warns
    assert conf["model_conf"]["lid_weight"] is None and conf["model_conf"]["ctc_weight"] == 0.5
    assert conf["model_conf"]["lid_loss"] == "ce"  # our keyword arguments are in the signature
    assert conf["encoder"] == "conformer" and conf["encoder_conf"]["num_blocks"] == 6
    assert "lang_list" in conf and conf["train_router_only"] is False


def test_print_config_cli_resolves_plugin_names(repo_root):
    """The real entry point, as users run it: plugin modules resolve by name."""
    out = subprocess.run(
        [sys.executable, "-m", "espnet_plugins.bin.asr_train", "--print_config",
         "--encoder", "blr_moe", "--preencoder", "smear_moe"],
        cwd=repo_root, capture_output=True, text=True, check=True, timeout=120).stdout
    conf = yaml.safe_load(out)
    assert conf["encoder"] == "blr_moe" and "num_moe_blocks" in conf["encoder_conf"]
    assert conf["preencoder"] == "smear_moe" and "num_experts" in conf["preencoder_conf"]


def test_unknown_module_name_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as e:
        MoEASRTask.main(cmd=["--print_config", "--encoder", "no_such_encoder"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no_such_encoder'" in err and "conformer" in err


def test_language_labels_become_ids_and_unknown_languages_fail():
    pre = LanguageLabelPreprocessor(None, ["hi", "mr", "ta", "te"])
    assert pre("u1", {"lang": "ta"})["lang"].tolist() == [2]
    assert pre("u2", {"lang": "hi te"})["lang"].tolist() == [0, 3]
    with pytest.raises(ValueError, match="u3: language 'xx' is not in the lang_list"):
        pre("u3", {"lang": "xx"})


class ToyRouterEncoder(AbsEncoder):
    """Identity-ish encoder with a linear language router, to test the model's aux path."""

    def __init__(self, input_size: int = 8, num_langs: int = 3):
        super().__init__()
        self.proj = torch.nn.Linear(input_size, 8)
        self.router = torch.nn.Linear(input_size, num_langs)

    def output_size(self) -> int:
        return 8

    def router_parameters(self):
        return list(self.router.parameters())

    def forward(self, xs, ilens, prev_states=None):
        return self.forward_with_aux(xs, ilens)[:2] + (None,)

    def forward_with_aux(self, xs, ilens):
        return self.proj(xs), ilens, {"lid_logits": self.router(xs), "lid_lengths": ilens,
                                      "load_balance": self.router.weight.pow(2).mean(),
                                      "route_frac_x": xs.new_tensor(0.5)}


def _toy_model(**kw):
    torch.manual_seed(0)
    vocab = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    return MoEASRModel(
        vocab_size=len(vocab), token_list=vocab, frontend=None, specaug=None, normalize=None, preencoder=None,
        encoder=ToyRouterEncoder(), postencoder=None, decoder=None, ctc=CTC(len(vocab), 8),
        joint_network=None, ctc_weight=1.0, langs=["hi", "mr", "ta"], **kw)


def _batch():
    torch.manual_seed(1)
    return dict(speech=torch.randn(2, 12, 8), speech_lengths=torch.tensor([12, 9]),
                text=torch.tensor([[2, 3, 2], [3, -1, -1]]), text_lengths=torch.tensor([3, 1]),
                lang=torch.tensor([[1], [2]]), lang_lengths=torch.tensor([1, 1]))


def test_model_adds_weighted_lid_and_balance_losses_and_reports_them():
    """Loss = CTC + λ·LID + w·balance with LID and lid_acc computed by hand (not read back
    from the model's stats): a router whose three rows are equal, so its logits are its
    bias (0, 1, 0) on every frame; utterances of 12 and 9 frames (uneven padding)."""
    model = _toy_model(lid_weight=0.3, load_balance_weight=0.5)
    with torch.no_grad():
        model.encoder.router.weight.fill_(0.5)  # equal rows: softmax = softmax(bias); balance = 0.25
        model.encoder.router.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    loss, stats, _ = model(**_batch())  # langs mr (1) and ta (2); every frame says mr
    lse = math.log(2 + math.e)
    lid = (12 * (lse - 1.0) + 9 * lse) / 21  # CE over the 21 valid frames only
    assert float(stats["loss_lid"]) == pytest.approx(lid, rel=1e-5)
    assert float(stats["lid_acc"]) == 0.5  # utterance 1 right, utterance 2 wrong
    assert float(stats["loss_load_balance"]) == pytest.approx(0.25)
    expected = float(stats["loss_ctc"]) + 0.3 * lid + 0.5 * 0.25
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5) and float(stats["loss"]) == pytest.approx(expected, rel=1e-5)
    assert stats["route_frac_x"] == 0.5 and "load_balance" not in stats
    loss.backward()
    assert model.encoder.router.weight.grad.abs().sum() > 0


def _uneven_lid_logits():
    """Hand-made router logits for langs [[mr, hi], [ta]] (first language counts) with
    lengths 12 and 9 of 12 frames. Utterance 1: 7 frames say mr, 5 say hi (majority
    right). Utterance 2: 5 valid frames say hi, 4 say ta (majority wrong); its 3 padded
    frames say ta loudly (counting them would flip its vote and lower the CE)."""
    logits = torch.zeros(2, 12, 3)
    logits[0, :7, 1] = 2.0
    logits[0, 7:, 0] = 2.0
    logits[1, :5, 0] = 2.0
    logits[1, 5:9, 2] = 2.0
    logits[1, 9:, 2] = 50.0
    return ({"lid_logits": logits, "lid_lengths": torch.tensor([12, 9])},
            torch.tensor([[1, 0], [2, -1]]), torch.tensor([2, 1]))


def test_frame_lid_loss_is_normalised_over_valid_frames_and_lid_acc_votes_over_them():
    """CE = Σ_valid CE / #valid frames (not / B·T, not a mean of utterance means), so the
    effective λ does not depend on padding; lid_acc = share of utterances whose majority
    frame decision over valid frames is their first language."""
    model = _toy_model()
    aux, lang, lang_lengths = _uneven_lid_logits()
    loss, acc = model.lid_loss_and_acc(aux, lang, lang_lengths)
    a = math.log(math.exp(2) + 2)  # CE of a frame whose target has logit 0 and one rival 2
    # 11 frames right (CE a - 2), 10 frames wrong (CE a), over 21 valid frames
    assert float(loss) == pytest.approx((11 * (a - 2) + 10 * a) / 21, rel=1e-6)
    assert float(acc) == 0.5
    # More padding, or other content in it, changes nothing.
    longer = dict(aux, lid_logits=torch.cat([aux["lid_logits"], torch.randn(2, 5, 3) * 9], 1))
    loss2, acc2 = model.lid_loss_and_acc(longer, lang, lang_lengths)
    assert float(loss2) == pytest.approx(float(loss), rel=1e-6) and float(acc2) == 0.5


def test_ctc_lid_loss_handles_code_switched_sequences():
    model = _toy_model(lid_loss="ctc")
    logits = torch.full((1, 10, 3), -5.0)
    logits[0, :5, 0] = 5.0
    logits[0, 5:, 2] = 5.0  # hi then ta
    good, _ = model.lid_loss_and_acc({"lid_logits": logits, "lid_lengths": torch.tensor([10])},
                                     torch.tensor([[0, 2]]), torch.tensor([2]))
    bad, _ = model.lid_loss_and_acc({"lid_logits": logits, "lid_lengths": torch.tensor([10])},
                                    torch.tensor([[2, 0]]), torch.tensor([2]))
    assert torch.isfinite(good) and good < bad


def test_router_only_training_needs_no_text_and_freezes_everything_else():
    model = _toy_model()
    freeze_all_but_router(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"encoder.router.weight", "encoder.router.bias"}
    b = _batch()
    loss, stats, _ = model(speech=b["speech"], speech_lengths=b["speech_lengths"], lang=b["lang"], lang_lengths=b["lang_lengths"])
    assert torch.allclose(loss, stats["loss_lid"]) and "loss_ctc" not in stats


def test_router_parameters_skip_modules_without_a_router():
    model = _toy_model()
    model.frontend = torch.nn.Identity()  # a module without router_parameters
    assert [id(p) for p in model.router_parameters()] == [id(p) for p in model.encoder.router.parameters()]


def test_stock_model_without_router_cannot_train_router_only():
    model = _toy_model()
    model.encoder.router_parameters = lambda: []
    with pytest.raises(ValueError, match="needs a model with a language router"):
        freeze_all_but_router(model)


def test_build_model_injects_lang_list_and_keeps_it_portable(tmp_path):
    (tmp_path / "langs").write_text("hi\nmr\nta\nte\n")
    parser = MoEASRTask.get_parser()
    args = parser.parse_args(["--token_list", str(_tokens(tmp_path)),
                              "--lang_list", str(tmp_path / "langs"), "--encoder", "conformer",
                              "--encoder_conf", "num_blocks=1", "--encoder_conf", "output_size=16",
                              "--encoder_conf", "linear_units=16", "--encoder_conf", "attention_heads=2",
                              "--decoder", "none", "--model_conf", "ctc_weight=1.0", "--input_size", "8"])
    model = MoEASRTask.build_model(args)
    assert isinstance(model, MoEASRModel)
    assert model.langs == ["hi", "mr", "ta", "te"] and args.lang_list == model.langs


def _tokens(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("<blank>\n<unk>\na\nb\n<sos/eos>\n")
    return path


def test_router_only_training_keeps_every_non_router_tensor_bit_identical():
    """Real BLR-MoE encoder (BatchNorm in its conv modules), Adam with weight decay."""
    from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder

    torch.manual_seed(0)
    vocab = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    enc = BLRMoEEncoder(input_size=8, output_size=16, attention_heads=2, linear_units=16, num_shared_blocks=1,
                        num_moe_blocks=1, langs=["hi", "mr", "ta"], router_channels=8, input_layer="linear")
    model = MoEASRModel(vocab_size=len(vocab), token_list=vocab, frontend=None, specaug=None, normalize=None,
                        preencoder=None, encoder=enc, postencoder=None, decoder=None, ctc=CTC(len(vocab), 16),
                        joint_network=None, ctc_weight=1.0, langs=["hi", "mr", "ta"])
    freeze_all_but_router(model)
    router_only_train_mode(model)  # what MoETrainer does before each batch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.1)
    b = _batch()
    for _ in range(3):
        loss, _, _ = model(speech=b["speech"], speech_lengths=b["speech_lengths"], lang=b["lang"], lang_lengths=b["lang_lengths"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("encoder.router.") for k in changed), changed
    assert model.encoder.router.training and not model.encoder.encoders[0].training


def test_ctc_emission_counts_collapsed_non_blank_tokens_in_valid_frames():
    model = _toy_model().train()
    best = torch.tensor([[0, 2, 2, 0, 2, 3, 3, 0, 2, 2, 2, 2],
                         [3, 0, 3, 3, 2, 0, 2, 2, 0, 3, 3, 2]])  # blank 0
    model.ctc.argmax = lambda hs: best
    # utt 1 (12 frames) emits 2 2 3 2, utt 2 (9 valid frames) 3 3 2 2 (its padding would add 3 2)
    _, stats, _ = model(**_batch())
    assert float(stats["ctc_emission"]) == pytest.approx(8 / 4)  # per reference token (3 + 1)
    _, stats, _ = model.eval()(**_batch())
    assert "ctc_emission" not in stats  # a training statistic


def test_stock_espnet_model_builds_through_our_task(tmp_path):
    """model: espnet (ESPnet's own model class) was refused by a return annotation."""
    from espnet2.asr.espnet_model import ESPnetASRModel

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\na\nb\n<sos/eos>\n", encoding="utf-8")
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(ROOT / "conf" / "train_mini.yaml"), "--model", "espnet",
        "--token_list", str(tokens), "--normalize", "none", "--frontend_conf", "fs=16k"])
    model = MoEASRTask.build_model(args)
    assert type(model) is ESPnetASRModel
