"""A language-conditioned SMEAR projector: ``condition_dropout`` must lie in [0, 1), and its
checkpoint holds parameters only (the language -> condition map is rebuilt from the config),
issue 32: mutants of both survived."""
import pytest
import torch

from espnet_plugins.asr.preencoder.smear_projector import SmearProjector

LANGS = ["hi", "mr", "ta", "te"]


def _proj(**kw):
    return SmearProjector(input_size=8, output_size=8, hidden_size=8, num_experts=2, langs=LANGS,
                          gate_conditioning="language", **kw)


@pytest.mark.parametrize("dropout", [1.0, 1.5, -0.1])
def test_condition_dropout_outside_0_1_is_refused(dropout):
    with pytest.raises(ValueError, match=rf"condition_dropout must be in \[0, 1\), got {dropout}"):
        _proj(condition_dropout=dropout)


def test_condition_dropout_0_and_just_below_1_are_accepted():
    _proj(condition_dropout=0.0), _proj(condition_dropout=0.99)


def test_checkpoint_holds_parameters_only():
    proj = _proj()
    params = {name for name, _ in proj.named_parameters()}
    assert set(proj.state_dict()) == params
    fresh = _proj()
    fresh.load_state_dict(proj.state_dict(), strict=True)
    torch.testing.assert_close(fresh.condition_bias.weight, proj.condition_bias.weight)
