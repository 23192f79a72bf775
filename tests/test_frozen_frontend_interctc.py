"""``frontend: frozen_encoder`` on a base model trained with intermediate CTC: ESPnet's encode then
returns (final output, intermediate outputs); the frontend must pass on the final output (issue
32: mutants that dropped or swapped it survived: no test had an InterCTC base)."""
import torch
import yaml

from espnet_plugins.asr.frontend.frozen_encoder_frontend import FrozenEncoderFrontend
from espnet_plugins.tasks.asr import MoEASRTask

torch.set_num_threads(1)


def test_output_is_the_final_encoder_output_of_an_interctc_base(tmp_path):
    args = MoEASRTask.get_parser().parse_args([])
    args.token_list = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
    args.frontend_conf = dict(n_fft=128, win_length=128, hop_length=64, n_mels=8)
    args.normalize = "utterance_mvn"
    args.encoder = "conformer"
    args.encoder_conf = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2, input_layer="conv2d",
                             cnn_module_kernel=3, interctc_layer_idx=[1], interctc_use_conditioning=False)
    args.decoder = None
    args.model_conf = dict(ctc_weight=1.0, interctc_weight=0.3)
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args).eval()
    config, checkpoint = tmp_path / "config.yaml", tmp_path / "model.pth"
    config.write_text(yaml.safe_dump(vars(args)), encoding="utf-8")
    torch.save(model.state_dict(), checkpoint)
    g = torch.Generator().manual_seed(1)
    wav, lengths = torch.randn(2, 3200, generator=g), torch.tensor([3200, 2400])
    with torch.no_grad():
        (final, intermediate), ref_lens = model.encode(wav, lengths)
    assert len(intermediate) == 1  # the base really returns intermediate outputs
    frontend = FrozenEncoderFrontend(str(config), str(checkpoint))
    out, out_lens = frontend(wav, lengths)
    torch.testing.assert_close(out, final)
    assert out_lens.tolist() == ref_lens.tolist() and frontend.output_size() == 16
