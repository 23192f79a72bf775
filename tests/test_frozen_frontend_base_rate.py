"""``frontend: frozen_encoder`` reads the base model's sampling rate from its config.yaml
(``frontend_conf.fs``, e.g. ``8k``), not only the 16 kHz default (issue 32: mutants that
ignore the base config survived)."""
import pytest
import yaml

from espnet_plugins.asr.frontend.frozen_encoder_frontend import FrozenEncoderFrontend


@pytest.mark.parametrize("base_fs", [8000, "8k"])
def test_a_base_trained_at_8_khz_refuses_16_khz_input(tmp_path, base_fs):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"frontend": "default", "frontend_conf": {"fs": base_fs, "n_mels": 8}}),
                      encoding="utf-8")
    with pytest.raises(ValueError, match=f"fs=16000 but the base model in .*config.yaml was trained at fs={base_fs};"):
        FrozenEncoderFrontend(str(config), fs=16000)
    with pytest.raises(ValueError, match="fs=16k but the base model"):
        FrozenEncoderFrontend(str(config), fs="16k")
