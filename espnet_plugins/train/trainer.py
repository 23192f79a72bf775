"""``MoETrainer``: ESPnet's trainer plus a SpecAugment schedule, SortaGrad and a plateau
warning.

ESPnet applies SpecAugment from the first update. A pure-CTC model trained on small
batches first sits on the blank plateau (it emits nothing); masking its input there
keeps it on the plateau longer. ``--specaug_start_iter N`` trains the first N
iterations without SpecAugment and with it afterwards: augmentation once CTC emits
tokens. The schedule lives in the trainer (not in a module's config) and counts
training iterations (batches) the way ESPnet's reporter does, so it resumes with the
checkpoint and the same N means the same point in the logs and in TensorBoard.

``--sortagrad_epochs N`` (SortaGrad, the task's training iterator: see
:class:`espnet_plugins.train.sortagrad.SortaGradIterFactory`) orders the first N epochs'
batches from short to long utterances.

Plateau warning: after each validation past ``--plateau_warn_iter`` training
iterations, a valid ``cer_ctc`` still >= 95 % logs one warning line naming the usual
causes, so an all-blank model never finishes silently (run.sh repeats it after stage 6).
"""
import argparse
import dataclasses
import logging
from typing import Iterable, Iterator

from espnet2.train.reporter import aggregate
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from typeguard import typechecked


@dataclasses.dataclass
class MoETrainerOptions(TrainerOptions):
    specaug_start_iter: int = 0
    plateau_warn_iter: int = 400
    sortagrad_epochs: int = 0


PLATEAU_CER = 0.95
PLATEAU_MESSAGE = (
    "CTC is still on its blank plateau: valid cer_ctc={cer:.3f} after {iters} training "
    "iterations (the model emits ~nothing). Usual causes: learning rate too high for the "
    "batch size (optim_conf.lr vs batch_bins; try a lower lr or a longer warmup), too few "
    "updates (max_epoch, batch_bins), SpecAugment during the plateau (specaug_start_iter), "
    "or a data problem (text / wav.scp mismatch: local/validate_data_dir.py). Look at "
    "ctc_emission in this log and README 'CTC stays on its blank plateau'."
)


class MoETrainer(Trainer):
    """ESPnet's :class:`Trainer` with ``--specaug_start_iter``."""

    @classmethod
    @typechecked
    def build_options(cls, args: argparse.Namespace) -> TrainerOptions:
        return build_dataclass(MoETrainerOptions, args)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group("trainer schedule (espnet_plugins)")
        group.add_argument(
            "--specaug_start_iter",
            type=int,
            default=0,
            help="Apply SpecAugment (specaug/specaug_conf) only from this training "
            "iteration (batch, counted over epochs as in the training log) on; 0 = from the "
            "start, as stock ESPnet. Lets CTC leave its blank plateau unaugmented.",
        )
        group.add_argument(
            "--sortagrad_epochs",
            type=int,
            default=0,
            help="SortaGrad: the first N epochs visit the length-sorted mini-batches from the "
            "shortest utterances to the longest, instead of shuffled; 0 = stock ESPnet.",
        )
        group.add_argument(
            "--plateau_warn_iter",
            type=int,
            default=400,
            help="Warn after each validation once this many training iterations have run "
            "and valid cer_ctc is still >= 0.95 (CTC's blank plateau); 0 disables it.",
        )

    _train_iters = 0  # iterations finished by the last train_one_epoch (this process)

    @classmethod
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option) -> None:
        super().validate_one_epoch(model=model, iterator=iterator, reporter=reporter,
                                   options=options, distributed_option=distributed_option)
        limit = getattr(options, "plateau_warn_iter", 0)
        if limit > 0 and cls._train_iters >= limit and reporter.stats.get("cer_ctc"):
            cer = float(aggregate(reporter.stats["cer_ctc"]))
            if cer >= PLATEAU_CER:
                logging.warning(PLATEAU_MESSAGE.format(cer=cer, iters=cls._train_iters))

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter, summary_writer,
                        options, distributed_option) -> bool:
        start = getattr(options, "specaug_start_iter", 0)
        inner = model.module if hasattr(model, "module") else model  # DDP / DataParallel
        if start > 0 and not hasattr(inner, "specaug_enabled"):
            raise ValueError(
                f"--specaug_start_iter {start} needs model: moe_espnet (the default), which can "
                f"switch SpecAugment; {type(inner).__name__} cannot. Set specaug_start_iter: 0"
            )
        if start > 0 and getattr(inner, "specaug", None) is not None:
            iterator = _SpecAugSchedule(iterator, inner, reporter, start)
        try:
            return super().train_one_epoch(
                model=model, iterator=iterator, optimizers=optimizers, schedulers=schedulers,
                scaler=scaler, reporter=reporter, summary_writer=summary_writer,
                options=options, distributed_option=distributed_option,
            )
        finally:
            cls._train_iters = reporter.get_total_count()


class _SpecAugSchedule:
    """Iterator wrapper: before each batch, switch the model's SpecAugment on or off by
    the reporter's iteration count (batches finished so far, over all epochs)."""

    def __init__(self, iterator: Iterable, model, reporter, start: int):
        self.iterator, self.model, self.reporter, self.start = iterator, model, reporter, start

    def __len__(self):
        return len(self.iterator)

    def __iter__(self) -> Iterator:
        for batch in self.iterator:
            on = self.reporter.get_total_count() >= self.start
            if on != self.model.specaug_enabled:
                logging.info(
                    f"SpecAugment {'on' if on else 'off'} from iteration "
                    f"{self.reporter.get_total_count()} (--specaug_start_iter {self.start})"
                )
                self.model.specaug_enabled = on
            yield batch
