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
    assert model.specaug.training
    # a resumed run (reporter count restored past the start) augments from its first batch
    model.specaug.train(False)
    list(_SpecAugSchedule([batch(0)], model, FakeReporter(count=5), start=2))
    assert model.specaug.training
    # and a model in eval mode (validation) keeps it off
    list(_SpecAugSchedule([batch(0)], model.eval(), FakeReporter(count=5), start=2))
    assert not model.specaug.training


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


def _tiny_train_dir(tmp_path, n=12):
    import numpy as np
    import soundfile as sf

    lengths = {f"utt{i:02d}": 1600 * (1 + (7 * i) % n) for i in range(n)}  # distinct, unsorted
    wavs, texts, shapes, tshapes = [], [], [], []
    for uid, n_samples in lengths.items():
        path = tmp_path / f"{uid}.wav"
        sf.write(path, np.zeros(n_samples, dtype=np.float32), 16000)
        wavs.append(f"{uid} {path}")
        texts.append(f"{uid} {'अ' * 3}")
        shapes.append(f"{uid} {n_samples}")
        tshapes.append(f"{uid} 3")
    for name, lines in (("wav.scp", wavs), ("text", texts), ("speech_shape", shapes), ("text_shape", tshapes)):
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lengths


def _epoch_keys(args, epoch):
    from espnet2.train.distributed_utils import DistributedOption

    factory = MoEASRTask.build_iter_factory(args, DistributedOption(), "train")
    return [list(keys) for keys, _ in factory.build_iter(epoch)]


def test_sortagrad_first_epochs_go_short_to_long_then_shuffle_as_stock(tmp_path, lists):  # noqa: F811
    lengths = _tiny_train_dir(tmp_path)
    data = ["--train_data_path_and_name_and_type", f"{tmp_path}/wav.scp,speech,sound",
            "--train_data_path_and_name_and_type", f"{tmp_path}/text,text,text",
            "--train_shape_file", str(tmp_path / "speech_shape"),
            "--train_shape_file", str(tmp_path / "text_shape"),
            "--batch_type", "numel", "--batch_bins", "12000", "--num_workers", "0",
            "--use_preprocessor", "true", "--token_type", "char", "--seed", "3"]
    stock = parse(BASE_PRESET, lists, *data, "--sortagrad_epochs", "0")  # the preset has SortaGrad
    sorta = parse(BASE_PRESET, lists, *data, "--sortagrad_epochs", "2")
    assert MoETrainer.build_options(sorta).sortagrad_epochs == 2
    for epoch in (1, 2):
        batches = _epoch_keys(sorta, epoch)
        longest = [max(lengths[k] for k in b) for b in batches]
        assert len(batches) > 3 and longest == sorted(longest), (epoch, longest)
        # the same batches as stock ESPnet, only in another order
        assert sorted(map(sorted, batches)) == sorted(map(sorted, _epoch_keys(stock, epoch)))
    assert _epoch_keys(sorta, 3) == _epoch_keys(stock, 3)
    assert _epoch_keys(stock, 1) != _epoch_keys(sorta, 1)  # stock shuffles epoch 1


class FakeIterFactory:
    def __init__(self, batches):
        self.batches = batches

    def build_iter(self, epoch, shuffle=None):
        return [None] * self.batches


def _tristage(max_steps):
    from espnet2.schedulers.tristage_lr import TristageLR
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    return TristageLR(opt, max_steps=max_steps)


def test_a_fixed_length_schedule_that_does_not_span_the_training_is_named():
    from espnet_plugins.train.trainer import schedule_length_warning
    opts = types.SimpleNamespace(max_epoch=8, accum_grad=1)
    assert schedule_length_warning([_tristage(3152)], FakeIterFactory(394), opts) is None
    assert schedule_length_warning([_tristage(3160)], FakeIterFactory(394), opts) is None  # within 2 %
    msg = schedule_length_warning([_tristage(3152)], FakeIterFactory(200), opts)
    assert "max_steps=3152" in msg and "8 epochs x 200 batches" in msg and "max_steps: 1600" in msg
    assert "holds its final lr" not in msg and "before the end of its decay" in msg
    msg = schedule_length_warning([_tristage(1000)], FakeIterFactory(394), opts)
    assert "holds its final lr" in msg and "max_steps: 3152" in msg
    # accum_grad divides the batches into updates
    assert schedule_length_warning([_tristage(1576)], FakeIterFactory(394), types.SimpleNamespace(max_epoch=8, accum_grad=2)) is None


def test_schedules_without_a_length_are_not_checked():
    from espnet2.schedulers.warmup_lr import WarmupLR
    from espnet_plugins.train.trainer import schedule_length_warning
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    opts = types.SimpleNamespace(max_epoch=8, accum_grad=1)
    assert schedule_length_warning([WarmupLR(opt, warmup_steps=250), None], FakeIterFactory(5), opts) is None


def test_the_default_preset_schedule_spans_the_default_corpus_training(lists):  # noqa: F811
    """The preset's max_steps against its own max_epoch at the default corpus's 394 batches
    an epoch (9 x 394 = 3546; bench/results/convergence json 'iters')."""
    from espnet_plugins.train.trainer import schedule_length_warning
    args = parse(BASE_PRESET, lists)
    from espnet2.tasks.abs_task import scheduler_classes
    from espnet_plugins.train.auto_schedule import resolve_auto_schedule
    assert resolve_auto_schedule(args, batches=394) == 3546  # max_steps: auto (tests/test_auto_schedule.py)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sch = scheduler_classes[args.scheduler](opt, **args.scheduler_conf)
    opts = MoETrainer.build_options(args)
    assert schedule_length_warning([sch], FakeIterFactory(394), opts) is None
    assert schedule_length_warning([sch], FakeIterFactory(300), opts) is not None
