"""SMEAR's switch balance loss by value when utterances go to different experts: f_m counts
each utterance's arg-max expert of ḡ (issue 32: a mutant that took the arg-max over the
flattened batch survived, because the untrained gate sent every utterance to one expert).

The gate is conditioned on the language with a large bias (language l -> expert l), so the
routing is known; checked through the model's training statistics. Parameter names are
those of checkpoints (pinned by tests/test_refactor_pins.py)."""
import pytest
import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

from espnet_plugins.asr.espnet_model import MoEASRModel
from espnet_plugins.asr.preencoder.smear_projector import SmearProjector

torch.set_num_threads(1)
LANGS = ["hi", "mr", "ta", "te"]
VOCAB = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]


def test_switch_loss_counts_each_utterances_own_expert():
    torch.manual_seed(0)
    proj = SmearProjector(input_size=8, output_size=8, hidden_size=8, num_experts=4, load_balance_type="switch",
                          langs=LANGS, gate_conditioning="language", condition_dropout=0.0)
    with torch.no_grad():
        proj.condition_bias.weight.zero_()
        proj.condition_bias.weight[:4] = 20.0 * torch.eye(4)
    encoder = TransformerEncoder(8, output_size=8, attention_heads=2, linear_units=8, num_blocks=1,
                                 input_layer="linear", dropout_rate=0.0)
    model = MoEASRModel(vocab_size=len(VOCAB), token_list=VOCAB, frontend=None, specaug=None, normalize=None,
                        preencoder=proj, encoder=encoder, postencoder=None, decoder=None, ctc=CTC(len(VOCAB), 8),
                        joint_network=None, ctc_weight=1.0, langs=LANGS, lid_weight=0.0).train()
    g = torch.Generator().manual_seed(1)
    speech = torch.randn(3, 12, 8, generator=g)
    _, stats, _ = model(speech, torch.tensor([12, 10, 7]), torch.tensor([[2, 3], [3, 2], [2, -1]]),
                        torch.tensor([2, 2, 1]), torch.tensor([[0], [1], [1]]), torch.tensor([1, 1, 1]))
    mean_gate = [float(stats[f"gate_mean_e{m}"]) for m in range(4)]
    assert mean_gate[0] > 0.3 and mean_gate[1] > 0.6  # the bias routes hi -> 0, mr -> 1
    f = [1 / 3, 2 / 3, 0.0, 0.0]
    assert float(stats["loss_load_balance"]) == pytest.approx(4 * sum(a * b for a, b in zip(f, mean_gate)), rel=1e-5)
