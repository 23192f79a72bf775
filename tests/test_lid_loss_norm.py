"""``model_conf.lid_loss_norm``: the frame LID loss normalised per frame or per utterance.

``utterance`` sums each utterance's frame cross-entropies and averages over utterances,
as ESPnet's CTC loss is normalised (``length_normalized_loss: false``), so that ``λ``
weighs LID against CTC on one scale (docs/router_diagnosis.md).
"""
import math

import pytest
import torch
from espnet2.asr.ctc import CTC

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.asr.espnet_model import MoEASRModel

torch.set_num_threads(1)
VOCAB = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]


def _model(**kw):
    torch.manual_seed(0)
    encoder = BLRMoEEncoder(8, output_size=16, attention_heads=2, linear_units=32, num_shared_blocks=1,
                            num_moe_blocks=1, langs=["hi", "mr", "ta"], router_channels=8,
                            input_layer="linear")
    return MoEASRModel(
        vocab_size=len(VOCAB), token_list=VOCAB, frontend=None, specaug=None, normalize=None,
        preencoder=None, encoder=encoder, postencoder=None, decoder=None, ctc=CTC(len(VOCAB), 16),
        joint_network=None, ctc_weight=1.0, langs=["hi", "mr", "ta"], **kw)


def _logits():
    """Langs [mr, ta], 12 and 9 valid frames of 12: utterance 1 has 7 frames right, 5
    wrong; utterance 2 has 4 right, 5 wrong, and loud padding that must not count."""
    logits = torch.zeros(2, 12, 3)
    logits[0, :7, 1] = 2.0
    logits[0, 7:, 0] = 2.0
    logits[1, :5, 0] = 2.0
    logits[1, 5:9, 2] = 2.0
    logits[1, 9:, 2] = 50.0
    aux = {"lid_logits": logits, "lid_lengths": torch.tensor([12, 9])}
    return aux, torch.tensor([[1], [2]]), torch.tensor([1, 1])


def test_utterance_norm_sums_valid_frames_per_utterance():
    a = math.log(math.exp(2) + 2)  # CE of a frame whose target has logit 0 and one rival 2
    total = 11 * (a - 2) + 10 * a  # 11 frames right, 10 wrong, padding excluded
    aux, lang, lengths = _logits()
    frame, acc_f = _model().lid_loss_and_acc(aux, lang, lengths)
    utt, acc_u = _model(lid_loss_norm="utterance").lid_loss_and_acc(aux, lang, lengths)
    assert float(frame) == pytest.approx(total / 21, rel=1e-6)
    assert float(utt) == pytest.approx(total / 2, rel=1e-6)  # / B, not / frames
    assert float(acc_f) == float(acc_u) == 0.5  # the decision is not affected
    longer = dict(aux, lid_logits=torch.cat([aux["lid_logits"], torch.randn(2, 5, 3) * 9], 1))
    again, _ = _model(lid_loss_norm="utterance").lid_loss_and_acc(longer, lang, lengths)
    assert float(again) == pytest.approx(float(utt), rel=1e-6)  # padding changes nothing


def test_utterance_norm_puts_lid_on_ctc_scale_in_the_shared_blocks():
    """On 30-frame utterances the LID term's gradient on the shared block is ~30x larger
    with ``utterance`` than with ``frame`` (CTC's gradient is the same in both)."""
    torch.manual_seed(1)
    batch = dict(speech=torch.randn(2, 30, 8), speech_lengths=torch.tensor([30, 30]),
                 text=torch.tensor([[2, 3, 2], [3, 2, -1]]), text_lengths=torch.tensor([3, 2]),
                 lang=torch.tensor([[1], [2]]), lang_lengths=torch.tensor([1, 1]))
    norms = {}
    for norm in ("frame", "utterance"):
        model = _model(lid_loss_norm=norm).eval()
        aux = model.encode_with_aux(batch["speech"], batch["speech_lengths"])[2]
        loss, _ = model.lid_loss_and_acc(aux, batch["lang"], batch["lang_lengths"])
        loss.backward()
        norms[norm] = sum(float(p.grad.norm() ** 2) for p in model.encoder.encoders[0].parameters()
                          if p.grad is not None) ** 0.5
    assert norms["utterance"] / norms["frame"] == pytest.approx(30.0, rel=1e-4)


def test_bad_norm_is_refused():
    with pytest.raises(ValueError, match="lid_loss_norm must be"):
        _model(lid_loss_norm="batch")
