"""``MoETrainer``: ESPnet's trainer plus a SpecAugment schedule.

ESPnet applies SpecAugment from the first update. A pure-CTC model trained on small
batches first sits on the blank plateau (it emits nothing); masking its input there
keeps it on the plateau longer. ``--specaug_start_iter N`` trains the first N
iterations without SpecAugment and with it afterwards: augmentation once CTC emits
tokens. The schedule lives in the trainer (not in a module's config) and counts
training iterations (batches) the way ESPnet's reporter does, so it resumes with the
checkpoint and the same N means the same point in the logs and in TensorBoard.
"""
import argparse
import dataclasses
import logging
from typing import Iterable, Iterator

from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from typeguard import typechecked


@dataclasses.dataclass
class MoETrainerOptions(TrainerOptions):
    specaug_start_iter: int = 0


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
        if start <= 0 or getattr(inner, "specaug", None) is None:
            return super().train_one_epoch(
                model=model, iterator=iterator, optimizers=optimizers, schedulers=schedulers,
                scaler=scaler, reporter=reporter, summary_writer=summary_writer,
                options=options, distributed_option=distributed_option,
            )
        return super().train_one_epoch(
            model=model, iterator=_SpecAugSchedule(iterator, inner, reporter, start),
            optimizers=optimizers, schedulers=schedulers, scaler=scaler, reporter=reporter,
            summary_writer=summary_writer, options=options, distributed_option=distributed_option,
        )


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
