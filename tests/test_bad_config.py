"""Bad configurations are rejected when the model is built (before any data is read),
with a message that says what is wrong and how to fix it."""
import subprocess
import sys

import pytest

from espnet_plugins.tasks.asr import MoEASRTask

BLR_TINY = ["--encoder", "blr_moe", "--encoder_conf", "output_size=16", "--encoder_conf", "attention_heads=2",
            "--encoder_conf", "linear_units=16", "--encoder_conf", "num_shared_blocks=1",
            "--encoder_conf", "num_moe_blocks=1", "--encoder_conf", "router_channels=8"]


def _build(tmp_path, *argv, langs=("hi", "mr", "ta", "te")):
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\na\nb\n<sos/eos>\n")
    opts = ["--token_list", str(tmp_path / "tokens.txt"), "--decoder", "none", "--model_conf", "ctc_weight=1.0",
            "--input_size", "8"]
    if langs is not None:
        (tmp_path / "langs").write_text("".join(f"{x}\n" for x in langs))
        opts += ["--lang_list", str(tmp_path / "langs")]
    args = MoEASRTask.get_parser().parse_args(opts + list(argv))
    return MoEASRTask.build_model(args)


def test_a_valid_tiny_config_builds(tmp_path):
    model = _build(tmp_path, *BLR_TINY)
    assert model.encoder.langs == ["hi", "mr", "ta", "te"] and model.encoder.num_experts == 4


def test_experts_not_matching_languages(tmp_path):
    with pytest.raises(ValueError, match=r"num_experts=3 but langs has 4 languages .*drop num_experts or make them agree"):
        _build(tmp_path, *BLR_TINY, "--encoder_conf", "num_experts=3")


def test_moe_encoder_without_lang_list(tmp_path):
    with pytest.raises(ValueError, match=r"needs its languages.*--lang_list"):
        _build(tmp_path, *BLR_TINY, langs=None)


def test_duplicate_language_in_lang_list(tmp_path):
    with pytest.raises(ValueError, match=r"--lang_list has duplicate languages: \[.hi., .mr., .hi.\]"):
        _build(tmp_path, *BLR_TINY, langs=("hi", "mr", "hi"))


@pytest.mark.parametrize("option", ["lid_weight=-0.3", "load_balance_weight=-1"])
def test_negative_loss_weight(tmp_path, option):
    with pytest.raises(ValueError, match=r"must be >= 0 \(set 0 to disable a loss\)"):
        _build(tmp_path, *BLR_TINY, "--model_conf", option)


def test_unknown_lid_loss(tmp_path):
    with pytest.raises(ValueError, match=r"lid_loss must be 'ce' or 'ctc', got 'focal'"):
        _build(tmp_path, *BLR_TINY, "--model_conf", "lid_loss=focal")


@pytest.mark.parametrize("option,message", [
    ("moe_attention_projections=[v,x]", r"expert_projections must be distinct letters among q, k, v, o"),
    ("router_type=lstm", r"router_type"),
    ("routing=segment", r"routing"),
    ("expert_init=zeros", r"expert_init must be 'replicate' or 'independent'"),
    ("input_layer=conv3d", r"input_layer must be one of"),
])
def test_bad_encoder_options(tmp_path, option, message):
    with pytest.raises(ValueError, match=message):
        _build(tmp_path, *BLR_TINY, "--encoder_conf", option)


def test_unknown_encoder_option_name(tmp_path):
    # typeguard / ESPnet: an argument the class does not take is a TypeError naming it.
    with pytest.raises(TypeError, match="num_expertz"):
        _build(tmp_path, *BLR_TINY, "--encoder_conf", "num_expertz=4")


def test_unknown_module_name_on_the_command_line(repo_root):
    res = subprocess.run([sys.executable, "-m", "espnet_plugins.bin.asr_train", "--print_config",
                          "--encoder", "blr-moe"], cwd=repo_root, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2
    assert "invalid choice: 'blr-moe'" in res.stderr and "blr_moe" in res.stderr
