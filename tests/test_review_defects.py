"""Regression tests for the defects of the core review (issue 33), one section each."""
from pathlib import Path

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


def test_router_only_training_applies_specaug_and_the_nonfinite_guard():
    model = _model(specaug=CountingSpecAug())
    model.freeze_all_but_router()
    model.train()
    assert model.training  # ESPnet's encode applies SpecAugment only when this is set
    assert model.encoder.router.training
    assert not model.encoder.encoders[0].training and not model.encoder.embed.training  # frozen: eval
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith("encoder.router.")}
    b = _batch()
    del b["text"], b["text_lengths"]  # router augmentation: audio + language only
    loss, stats, _ = model(**b)
    assert model.specaug.calls == 1
    assert float(stats["nonfinite_step"]) == 0.0 and torch.isfinite(loss)
    bad = _batch(nan=True)
    del bad["text"], bad["text_lengths"]
    loss, stats, _ = model(**bad)
    assert not torch.isfinite(loss) and float(stats["nonfinite_step"]) == 1.0
    assert model.num_nonfinite_steps == 1
    model.eval()
    assert not model.training and not model.encoder.router.training
    model(**b)
    assert model.specaug.calls == 2  # the finite and the NaN batch; none in eval mode


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
