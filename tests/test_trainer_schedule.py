"""MoETrainer: the SpecAugment schedule (--specaug_start_iter) and the plateau warning."""
import logging
import types

import pytest
import torch
from espnet2.train.reporter import to_reported_value
from espnet2.train.trainer import Trainer

from espnet_plugins.tasks.asr import MoEASRTask
from espnet_plugins.train.trainer import MoETrainer, _SpecAugSchedule

from test_presets import BASE_PRESET, batch, lists, parse  # noqa: F401  (fixture)

torch.set_num_threads(1)


class CountingSpecAug(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, lengths):
        self.calls += 1
        return x, lengths


class FakeReporter:
    def __init__(self, count=0):
        self.count, self.stats = count, {}

    def get_total_count(self):
        return self.count


def test_task_uses_our_trainer_and_parses_the_options(lists):  # noqa: F811
    assert MoEASRTask.trainer is MoETrainer
    args = parse(BASE_PRESET, lists, "--specaug_start_iter", "7", "--plateau_warn_iter", "3")
    options = MoETrainer.build_options(args)
    assert options.specaug_start_iter == 7 and options.plateau_warn_iter == 3


def test_specaug_is_off_before_the_start_iteration_and_on_after(lists):  # noqa: F811
    model = MoEASRTask.build_model(parse(BASE_PRESET, lists)).train()
    model.specaug = CountingSpecAug()
    reporter = FakeReporter()
    schedule = _SpecAugSchedule([batch(0), batch(1), batch(2)], model, reporter, start=2)
    for b in schedule:
        model(**b)
        reporter.count += 1  # ESPnet's reporter.next() after each batch
        expected_calls = max(0, reporter.count - 2)
        assert model.specaug.calls == expected_calls
    assert model.specaug_enabled
    # a resumed run (reporter count restored past the start) augments from its first batch
    model.specaug_enabled = False
    list(_SpecAugSchedule([batch(0)], model, FakeReporter(count=5), start=2))
    assert model.specaug_enabled


def test_stock_model_with_a_schedule_is_a_clear_error():
    options = types.SimpleNamespace(specaug_start_iter=10)
    with pytest.raises(ValueError, match="needs model: moe_espnet"):
        MoETrainer.train_one_epoch(
            model=torch.nn.Linear(1, 1), iterator=[], optimizers=[], schedulers=[], scaler=None,
            reporter=FakeReporter(), summary_writer=None, options=options, distributed_option=None)


@pytest.mark.parametrize("cer, iters, warned", [(0.99, 500, True), (0.5, 500, False), (0.99, 100, False)])
def test_plateau_warning(monkeypatch, caplog, cer, iters, warned):
    monkeypatch.setattr(Trainer, "validate_one_epoch", classmethod(lambda cls, **kw: None))
    monkeypatch.setattr(MoETrainer, "_train_iters", iters)
    reporter = FakeReporter()
    reporter.stats["cer_ctc"] = [to_reported_value(cer, 3), to_reported_value(cer, 5)]
    with caplog.at_level(logging.WARNING):
        MoETrainer.validate_one_epoch(model=None, iterator=[], reporter=reporter,
                                      options=types.SimpleNamespace(plateau_warn_iter=400),
                                      distributed_option=None)
    assert ("blank plateau" in caplog.text) == warned
    if warned:
        assert f"after {iters} training iterations" in caplog.text and "learning rate" in caplog.text
