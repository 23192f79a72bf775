"""The LID losses by value against independent computations (issue 32: mutants survived).

``lid_loss: ctc`` is checked against a brute-force sum over every frame labelling (blank =
a constant logit 0, language l = class l + 1), on unevenly padded code-switched batches,
including an utterance too short for its language sequence (its loss is zeroed, not inf);
``lid_loss: ce`` with frame normalisation on a batch of one valid frame.
"""
import itertools
import math

import torch
import torch.nn.functional as F
from espnet2.asr.ctc import CTC

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.asr.espnet_model import MoEASRModel

torch.set_num_threads(1)
VOCAB = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
LANGS = ["hi", "mr", "ta"]


def _model(**kw):
    torch.manual_seed(0)
    encoder = BLRMoEEncoder(8, output_size=16, attention_heads=2, linear_units=32, num_shared_blocks=1,
                            num_moe_blocks=1, langs=LANGS, router_channels=8, input_layer="linear")
    return MoEASRModel(
        vocab_size=len(VOCAB), token_list=VOCAB, frontend=None, specaug=None, normalize=None,
        preencoder=None, encoder=encoder, postencoder=None, decoder=None, ctc=CTC(len(VOCAB), 16),
        joint_network=None, ctc_weight=1.0, langs=LANGS, **kw)


def _collapse(path):
    out = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
    return out


def _brute_force_ctc(logits, n_frames, langs):
    """-log P(langs | frames) by enumerating every labelling of the valid frames (blank logit 0)."""
    logp = torch.cat([torch.zeros(logits.size(0), 1), logits], dim=-1).double().log_softmax(-1)[:n_frames]
    target = [lang + 1 for lang in langs]
    total = 0.0
    for path in itertools.product(range(logp.size(1)), repeat=n_frames):
        if _collapse(path) == target:
            total += math.exp(sum(float(logp[t, c]) for t, c in enumerate(path)))
    return -math.log(total) if total > 0 else math.inf


def _ctc_batch():
    g = torch.Generator().manual_seed(3)
    logits = 2 * torch.randn(3, 4, len(LANGS), generator=g)
    lengths = torch.tensor([4, 3, 1])
    lang = torch.tensor([[1, -1], [2, 0], [0, 1]])  # utterance 3: two languages in one frame
    lang_lengths = torch.tensor([1, 2, 2])
    return logits, lengths, lang, lang_lengths


def test_ctc_lid_loss_is_the_length_normalised_mean_of_brute_force_sums():
    logits, lengths, lang, lang_lengths = _ctc_batch()
    loss, _ = _model(lid_loss="ctc").lid_loss_and_acc(
        {"lid_logits": logits, "lid_lengths": lengths}, lang, lang_lengths)
    per_utt = []
    for b in range(3):
        nll = _brute_force_ctc(logits[b], int(lengths[b]), lang[b, : lang_lengths[b]].tolist())
        per_utt.append(0.0 if math.isinf(nll) else nll / int(lang_lengths[b]))  # impossible: zeroed
    assert math.isinf(_brute_force_ctc(logits[2], 1, [0, 1]))
    assert abs(float(loss) - sum(per_utt) / 3) < 1e-5, (float(loss), per_utt)


def test_ctc_lid_loss_of_a_batch_of_possible_alignments_only():
    logits, lengths, lang, lang_lengths = _ctc_batch()
    loss, _ = _model(lid_loss="ctc").lid_loss_and_acc(
        {"lid_logits": logits[:2], "lid_lengths": lengths[:2]}, lang[:2], lang_lengths[:2])
    expected = sum(_brute_force_ctc(logits[b], int(lengths[b]), lang[b, : lang_lengths[b]].tolist())
                   / int(lang_lengths[b]) for b in range(2)) / 2
    assert abs(float(loss) - expected) < 1e-5


def test_frame_ce_of_a_batch_with_one_valid_frame_is_that_frames_cross_entropy():
    logits = torch.tensor([[[0.5, 2.0, -1.0], [9.0, -9.0, 0.0]]])  # frame 2 is padding
    loss, acc = _model().lid_loss_and_acc({"lid_logits": logits, "lid_lengths": torch.tensor([1])},
                                          torch.tensor([[2]]), torch.tensor([1]))
    expected = F.cross_entropy(logits[0, :1], torch.tensor([2]))
    assert abs(float(loss) - float(expected)) < 1e-6
    assert float(acc) == 0.0  # the valid frame votes for language 1, the label is 2


def test_ctc_lid_loss_trains_through_the_models_forward_with_code_switched_labels():
    model = _model(lid_loss="ctc").eval()  # no dropout: the two label sets alone differ
    g = torch.Generator().manual_seed(4)
    batch = dict(speech=torch.randn(2, 12, 8, generator=g), speech_lengths=torch.tensor([12, 9]),
                 text=torch.tensor([[2, 3, 2], [3, -1, -1]]), text_lengths=torch.tensor([3, 1]))
    _, stats, _ = model(**batch, lang=torch.tensor([[1, 2], [0, -1]]), lang_lengths=torch.tensor([2, 1]))
    _, other, _ = model(**batch, lang=torch.tensor([[1, -1], [0, -1]]), lang_lengths=torch.tensor([1, 1]))
    assert 0 < float(stats["loss_lid"]) < 1e3 and 0 < float(other["loss_lid"]) < 1e3
    assert float(stats["loss_lid"]) != float(other["loss_lid"])  # the second language counts
