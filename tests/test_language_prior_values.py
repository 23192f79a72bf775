"""Language priors by value: the bias a soft / hard prior adds to a router's logits, the
defaults of every entry point, the checks of the arguments and the warning for a module
that does not know an allowed language (issue 32: mutants of these survived)."""
import copy
import logging
import math

import pytest
import torch

from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
from espnet_plugins.asr.moe.language_router import LanguageRouter
from espnet_plugins.asr.moe_interface import require_language_prior_modules, set_model_language_prior

torch.set_num_threads(1)


def _router(num_languages=4):
    torch.manual_seed(0)
    return LanguageRouter(8, num_languages, router_type="linear", dropout_rate=0.0).eval()


def _frames():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 5, 8, generator=g), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])


def _shift(router, **prior):
    """Logits with the prior minus logits without it."""
    x, valid = _frames()
    with torch.no_grad():
        router.set_prior(None)
        plain = router(x, valid)
        router.set_prior(**prior)
        return router(x, valid) - plain


@pytest.mark.parametrize("soft_floor", [None, 0.5, 1.0])
def test_soft_prior_adds_log_soft_floor_to_the_other_languages_only(soft_floor):
    kwargs = {} if soft_floor is None else {"soft_floor": soft_floor}
    shift = _shift(_router(), allowed=[1, 3], mode="soft", **kwargs)
    expected = math.log(0.1 if soft_floor is None else soft_floor)  # default floor 0.1
    torch.testing.assert_close(shift[..., [1, 3]], torch.zeros(2, 5, 2))
    torch.testing.assert_close(shift[..., [0, 2]], torch.full((2, 5, 2), expected))


def test_hard_prior_is_the_default_and_prunes_the_other_languages():
    router = _router()
    shift = _shift(router, allowed=[2])
    torch.testing.assert_close(shift[..., 2], torch.zeros(2, 5))
    torch.testing.assert_close(shift[..., [0, 1, 3]], torch.full((2, 5, 3), -1e4))
    x, valid = _frames()
    with torch.no_grad():
        assert (router.select_experts(router(x, valid), valid)[valid] == 2).all()


@pytest.mark.parametrize("allowed", [[-1], [4], [0, 4], []])
def test_prior_indices_outside_the_languages_are_refused(allowed):
    with pytest.raises(ValueError, match=r"non-empty set of language indices in \[0, 4\), got"):
        _router().set_prior(allowed)


@pytest.mark.parametrize("soft_floor", [0.0, -0.1, 1.5, 2.0])
def test_soft_floor_outside_0_1_is_refused(soft_floor):
    with pytest.raises(ValueError, match=rf"soft_floor must be in \(0, 1\], got {soft_floor}"):
        _router().set_prior([0], mode="soft", soft_floor=soft_floor)


def test_unknown_prior_mode_is_refused_by_the_router_and_the_model():
    with pytest.raises(ValueError, match="prior mode must be 'hard' or 'soft', got 'medium'"):
        _router().set_prior([0], mode="medium")
    with pytest.raises(ValueError, match="prior mode must be 'hard' or 'soft', got 'medium'"):
        set_model_language_prior(_Model(_blr(["hi", "mr"])), ["hi"], ["hi", "mr"], mode="medium")


def _blr(langs):
    torch.manual_seed(0)
    return BLRMoEEncoder(input_size=8, output_size=16, attention_heads=2, linear_units=16, num_shared_blocks=1,
                         num_moe_blocks=1, langs=langs, router_channels=8, input_layer="linear",
                         dropout_rate=0.0, router_dropout_rate=0.0).eval()


class _Model(torch.nn.Module):
    def __init__(self, encoder, frontend=None):
        super().__init__()
        self.frontend, self.preencoder, self.encoder = frontend, None, encoder


def _router_shift(encoder, set_prior):
    """Shift of the encoder's router logits, after ``set_prior()``, against a copy without a prior."""
    g = torch.Generator().manual_seed(2)
    x, valid = torch.randn(1, 4, 16, generator=g), torch.ones(1, 4, dtype=torch.bool)
    set_prior()
    plain = copy.deepcopy(encoder)
    plain.set_language_prior(None)
    with torch.no_grad():
        return (encoder.router(x, valid) - plain.router(x, valid))[0, 0]


def test_encoder_passes_mode_and_soft_floor_to_its_router():
    enc = _blr(["hi", "mr", "ta"])
    shift = _router_shift(enc, lambda: enc.set_language_prior([0], mode="soft", soft_floor=0.5))
    torch.testing.assert_close(shift, torch.tensor([0.0, math.log(0.5), math.log(0.5)]))
    shift = _router_shift(enc, lambda: enc.set_language_prior([0], mode="soft"))  # default floor 0.1
    torch.testing.assert_close(shift, torch.tensor([0.0, math.log(0.1), math.log(0.1)]))


def test_model_prior_defaults_to_hard_and_passes_mode_and_soft_floor():
    enc = _blr(["hi", "mr", "ta"])
    model = _Model(enc)
    shift = _router_shift(enc, lambda: set_model_language_prior(model, ["mr"], ["hi", "mr", "ta"]))
    torch.testing.assert_close(shift, torch.tensor([-1e4, 0.0, -1e4]))
    shift = _router_shift(enc, lambda: set_model_language_prior(model, ["mr"], ["hi", "mr", "ta"], mode="soft"))
    torch.testing.assert_close(shift, torch.tensor([math.log(0.1), 0.0, math.log(0.1)]))
    shift = _router_shift(enc, lambda: set_model_language_prior(model, ["mr", "ta"], None, mode="soft",
                                                                soft_floor=0.25))
    torch.testing.assert_close(shift, torch.tensor([math.log(0.25), 0.0, 0.0]))
    shift = _router_shift(enc, lambda: set_model_language_prior(model, None, None))  # removes the prior
    torch.testing.assert_close(shift, torch.zeros(3))


def test_without_a_lang_list_the_prior_uses_the_union_of_the_modules_languages(caplog):
    inner, outer = _blr(["hi", "te"]), _blr(["hi", "mr", "ta"])
    model = _Model(outer, frontend=torch.nn.ModuleDict({"base": inner}))
    with caplog.at_level(logging.WARNING):
        set_model_language_prior(model, ["hi", "mr"], None, mode="soft", soft_floor=0.5)
    torch.testing.assert_close(_router_shift(outer, lambda: None), torch.tensor([0.0, 0.0, math.log(0.5)]))
    torch.testing.assert_close(_router_shift(inner, lambda: None), torch.tensor([0.0, math.log(0.5)]))
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.getMessage().startswith("language prior")]
    assert len(warnings) == 1, warnings  # only the module that lacks "mr"
    assert "BLRMoEEncoder" in warnings[0] and "does not know ['mr']" in warnings[0]
    assert "its prior is ['hi']" in warnings[0] and "its languages: ['hi', 'te']" in warnings[0]
    with pytest.raises(ValueError, match=r"unknown \['xx'\]; the model knows \['hi', 'te', 'mr', 'ta'\]"):
        set_model_language_prior(model, ["xx"], None)


def test_a_module_that_knows_none_of_the_allowed_languages_gets_no_prior(caplog):
    inner, outer = _blr(["hi", "te"]), _blr(["hi", "mr", "ta"])
    model = _Model(outer, frontend=torch.nn.ModuleDict({"base": inner}))
    with caplog.at_level(logging.WARNING):
        set_model_language_prior(model, ["ta"], None)
    torch.testing.assert_close(_router_shift(inner, lambda: None), torch.zeros(2))
    torch.testing.assert_close(_router_shift(outer, lambda: None), torch.tensor([-1e4, -1e4, 0.0]))
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.getMessage().startswith("language prior")]
    assert len(warnings) == 1 and "it gets no prior" in warnings[0] and "its prior is" not in warnings[0]


def test_no_prior_module_error_names_the_model_or_its_parts():
    with pytest.raises(ValueError, match=r"this model \(Linear\) has nothing it acts on"):
        require_language_prior_modules(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"this model \(encoder Linear\) has nothing"):
        require_language_prior_modules(_Model(torch.nn.Linear(2, 2)), "a prior")
