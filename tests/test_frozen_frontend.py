"""Tests of ``frontend: frozen_encoder`` on a tiny untrained stock conformer."""
import argparse

import pytest
import torch
import yaml

from espnet_plugins.asr.frontend.frozen_encoder_frontend import FrozenEncoderFrontend
from espnet_plugins.tasks.asr import MoEASRTask

torch.set_num_threads(1)

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]


def tiny_asr_args(encoder_size: int = 16) -> argparse.Namespace:
    args = MoEASRTask.get_parser().parse_args([])
    args.token_list = list(TOKENS)
    args.frontend_conf = dict(n_fft=128, win_length=128, hop_length=64, n_mels=8)
    args.normalize = "utterance_mvn"
    args.encoder = "conformer"
    args.encoder_conf = dict(
        output_size=encoder_size,
        attention_heads=2,
        linear_units=32,
        num_blocks=1,
        dropout_rate=0.3,  # nonzero so a module left in train mode would show
        input_layer="conv2d",
        rel_pos_type="latest",
        pos_enc_layer_type="rel_pos",
        selfattention_layer_type="rel_selfattn",
        cnn_module_kernel=3,
    )
    args.decoder = None  # what `decoder: none` becomes after ESPnet's argparse
    args.model_conf = dict(ctc_weight=1.0)
    return args


def save_model(tmp_path, name, encoder_size=16):
    """Build a tiny model and save it the way ESPnet training does."""
    torch.manual_seed(0)
    args = tiny_asr_args(encoder_size)
    model = MoEASRTask.build_model(args)
    config, checkpoint = tmp_path / f"{name}.yaml", tmp_path / f"{name}.pth"
    config.write_text(yaml.safe_dump(vars(args)), encoding="utf-8")
    torch.save(model.state_dict(), checkpoint)
    return model.eval(), str(config), str(checkpoint)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("base"), "base")


def speech():
    torch.manual_seed(1)
    return torch.randn(2, 3200), torch.tensor([3200, 2400])


def test_output_equals_base_encoder_and_size(base):
    model, config, checkpoint = base
    frontend = FrozenEncoderFrontend(config, checkpoint)
    assert frontend.output_size() == 16
    wav, lengths = speech()
    out, out_lens = frontend(wav, lengths)
    with torch.no_grad():
        ref, ref_lens = model.encode(wav, lengths)
    torch.testing.assert_close(out, ref)
    assert out_lens.tolist() == ref_lens.tolist()


def test_cache_encodes_each_training_utterance_once(base):
    _, config, checkpoint = base
    frontend = FrozenEncoderFrontend(config, checkpoint, cache=True).train()
    wav, lengths = speech()
    with torch.no_grad():
        _, ref_lens = frontend.asr_model.encode(wav, lengths)  # uncached: the frames of each utterance
    encoded = []
    encode = frontend.asr_model.encode
    frontend.asr_model.encode = lambda x, n: (encoded.append(n.tolist()), encode(x, n))[1]
    first, first_lens = frontend(wav, lengths)
    assert first_lens.tolist() == ref_lens.tolist() and ref_lens[0] != ref_lens[1]
    # the same utterances in the other order, with a new one: only the new one is encoded
    torch.manual_seed(2)
    new = torch.randn(1, 3200)
    batch = torch.stack([torch.cat([wav[1, :2400], torch.zeros(800)]), wav[0], new[0]])
    out, out_lens = frontend(batch, torch.tensor([2400, 3200, 3200]))
    assert encoded == [[3200, 2400], [3200]]
    assert out_lens.tolist() == [first_lens[1], first_lens[0], first_lens[0]]
    torch.testing.assert_close(out[0, : first_lens[1]], first[1, : first_lens[1]])
    torch.testing.assert_close(out[1], first[0])
    assert not out[0, first_lens[1]:].any()  # padded with zeros
    frontend.eval()  # decoding never reads or fills the cache
    frontend(new, torch.tensor([3200]))
    assert len(encoded) == 3 and len(frontend._cache) == 3


def test_stays_frozen_and_in_eval_under_parent_train(base):
    _, config, checkpoint = base
    frontend = FrozenEncoderFrontend(config, checkpoint)
    parent = torch.nn.ModuleDict(dict(frontend=frontend, head=torch.nn.Linear(16, 3)))
    parent.train()
    assert frontend.training
    assert not any(m.training for m in frontend.asr_model.modules())
    assert not any(p.requires_grad for p in frontend.parameters())
    wav, lengths = speech()
    first, _ = frontend(wav, lengths)
    second, _ = frontend(wav, lengths)
    torch.testing.assert_close(first, second)  # no dropout / SpecAugment
    assert first.grad_fn is None
    parent["head"](first).sum().backward()
    assert parent["head"].weight.grad is not None


def test_mismatched_checkpoint_fails_loudly(base, tmp_path):
    _, config, _ = base
    _, _, other_checkpoint = save_model(tmp_path, "wide", encoder_size=24)
    with pytest.raises(RuntimeError, match="does not match the model built from"):
        FrozenEncoderFrontend(config, other_checkpoint)


def test_sampling_rate_mismatch_fails(base):
    _, config, checkpoint = base
    with pytest.raises(ValueError, match="fs=8k but the base model"):
        FrozenEncoderFrontend(config, checkpoint, fs="8k")


def test_weights_come_from_parent_checkpoint_without_model_file(base):
    _, config, checkpoint = base
    loaded = FrozenEncoderFrontend(config, checkpoint)
    bare = FrozenEncoderFrontend(config, None)
    bare.load_state_dict(loaded.state_dict())
    wav, lengths = speech()
    torch.testing.assert_close(bare(wav, lengths)[0], loaded(wav, lengths)[0])


def test_smear_projector_trains_on_frozen_encoder_through_the_task(base):
    """The paper's setting: frozen base -> smear_moe -> light encoder -> CTC."""
    _, config, checkpoint = base
    args = tiny_asr_args()
    args.frontend = "frozen_encoder"
    args.frontend_conf = dict(asr_train_config=config, asr_model_file=checkpoint)
    args.normalize = None
    args.specaug = None
    args.preencoder = "smear_moe"
    args.preencoder_conf = dict(
        input_size=16, output_size=16, hidden_size=32, num_experts=4
    )
    args.encoder = "transformer"
    args.encoder_conf = dict(
        output_size=16, attention_heads=2, linear_units=32, num_blocks=1,
        input_layer="linear",
    )
    args.model_conf = dict(ctc_weight=1.0, load_balance_weight=0.1)
    model = MoEASRTask.build_model(args)
    model.train()
    wav, lengths = speech()
    text = torch.tensor([[2, 3, 4], [3, 2, -1]])
    loss, stats, _ = model(
        speech=wav, speech_lengths=lengths, text=text, text_lengths=torch.tensor([3, 2])
    )
    loss.backward()
    assert "gate_entropy" in stats and "loss_load_balance" in stats
    assert all(p.grad is None for p in model.frontend.parameters())
    assert model.preencoder.experts.w1.grad is not None
