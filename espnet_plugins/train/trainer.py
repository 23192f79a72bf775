"""``MoETrainer``: ESPnet's trainer plus a SpecAugment schedule, router-only training,
a non-finite-step guard, SortaGrad and a plateau warning.

ESPnet applies SpecAugment from the first update. A pure-CTC model trained on small
batches first sits on the blank plateau (it emits nothing); masking its input there
keeps it on the plateau longer. ``--specaug_start_iter N`` trains the first N
iterations without SpecAugment and with it afterwards: augmentation once CTC emits
tokens. The schedule lives in the trainer (not in a module's config) and counts
training iterations (batches) the way ESPnet's reporter does, so it resumes with the
checkpoint and the same N means the same point in the logs and in TensorBoard.

``--train_router_only`` (router augmentation; the task freezes every parameter but the
routers'): frozen modules run in eval mode, while SpecAugment and the guard below apply.

Non-finite steps: a training batch whose loss is NaN/inf (corrupt audio, an exploding
step) gets its BatchNorm running statistics restored, a warning with the running count,
and the stat ``nonfinite_step`` = 1 (its epoch mean is the fraction of such steps).
ESPnet's trainer then sees a non-finite gradient norm and skips the optimizer step.

``--sortagrad_epochs N`` (SortaGrad, the task's training iterator: see
:class:`espnet_plugins.train.sortagrad.SortaGradIterFactory`) orders the first N epochs'
batches from short to long utterances.

Schedule length: a scheduler that runs for a fixed number of updates (``tristagelr``'s
``max_steps``, ``exponentialdecaywarmup``'s ``total_steps``) is checked at the start of
training against ``max_epoch`` x the training iterator's batches / ``accum_grad``; a
mismatch (another corpus size, ``batch_bins`` or ``max_epoch``) logs one warning with
the value to set, since the schedule would otherwise end early (final lr held) or never
reach its decay. ``max_steps: auto`` (:mod:`espnet_plugins.train.auto_schedule`) sets it
from the same count before the scheduler is built.

Mixed precision on the CPU: ESPnet's ``--use_amp true`` enters ``autocast("cuda")``
only, so on the CPU (``--ngpu 0``) it would silently train in fp32 (and its
``GradScaler`` disables itself there). Here ``--use_amp`` with ``--ngpu 0`` runs each
training and validation forward under ``torch.autocast("cpu", dtype=torch.bfloat16)``;
the backward runs outside it, in the dtypes the forward chose, and the weights (the
optimizer's master copy) stay fp32. bf16 needs no loss scaling. On CUDA ESPnet's own
path applies unchanged (bf16 autocast where the GPU supports it).

Plateau warning: after each validation past ``--plateau_warn_iter`` training
iterations, a valid ``cer_ctc`` still >= 95 % logs one warning line naming the usual
causes, so an all-blank model never finishes silently (run.sh repeats it after stage 6).
"""
import argparse
import contextlib
import dataclasses
import logging
from typing import Callable, Iterable, Iterator, List

import torch

from espnet2.train.reporter import aggregate
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from typeguard import typechecked

from espnet_plugins.train.router_only import router_only_train_mode


@dataclasses.dataclass
class MoETrainerOptions(TrainerOptions):
    specaug_start_iter: int = 0
    plateau_warn_iter: int = 400
    sortagrad_epochs: int = 0
    train_router_only: bool = False


SCHEDULE_MESSAGE = (
    "lr schedule length mismatch: scheduler_conf.{key}={have} but this training runs "
    "{epochs} epochs x {batches} batches / accum_grad {accum} = {want} updates, so the "
    "schedule {what}. Set scheduler_conf.{key}: auto (sized to the corpus when training "
    "starts, as the presets do) or scheduler_conf.{key}: {want}."
)
SCHEDULE_TOLERANCE = 0.02  # DDP or a changed fold may move the batch count by a few


def planned_updates(train_iter_factory, max_epoch: int, accum_grad: int):
    """Optimizer updates the training will make, from epoch 1's batch count (None if the
    iterator factory cannot tell)."""
    try:
        batches = len(train_iter_factory.build_iter(1))
    except (TypeError, AttributeError, NotImplementedError):
        return None, None
    return batches, max_epoch * batches // max(accum_grad, 1)


def schedule_length_warning(schedulers, train_iter_factory, options):
    """The warning line for a fixed-length lr schedule that does not span the training."""
    for sch in schedulers:
        key = next((k for k in ("max_steps", "total_steps") if isinstance(getattr(sch, k, None), int)), None)
        if key is None:
            continue
        have = getattr(sch, key)
        batches, want = planned_updates(train_iter_factory, options.max_epoch, options.accum_grad)
        if want is None or abs(have - want) <= SCHEDULE_TOLERANCE * want:
            continue
        what = ("ends early and holds its final lr for the rest" if have < want
                else "stops before the end of its decay")
        return SCHEDULE_MESSAGE.format(key=key, have=have, epochs=options.max_epoch, batches=batches,
                                       accum=options.accum_grad, want=want, what=what)
    return None


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
    """ESPnet's :class:`Trainer` with ``--specaug_start_iter``, SortaGrad, the schedule
    length check and the plateau warning."""

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
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        warn = schedule_length_warning(schedulers, train_iter_factory, trainer_options)
        if warn:
            logging.warning(warn)
        super().run(model=model, optimizers=optimizers, schedulers=schedulers,
                    train_iter_factory=train_iter_factory, valid_iter_factory=valid_iter_factory,
                    plot_attention_iter_factory=plot_attention_iter_factory,
                    trainer_options=trainer_options, distributed_option=distributed_option)

    @classmethod
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option) -> None:
        with cpu_autocast(model, options):
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
        if start > 0 and not hasattr(inner, "encode_with_aux"):
            raise ValueError(
                f"--specaug_start_iter {start} needs model: moe_espnet (the default), which can "
                f"switch SpecAugment; {type(inner).__name__} cannot. Set specaug_start_iter: 0"
            )
        if getattr(options, "train_router_only", False):
            iterator = _BeforeEachBatch(iterator, lambda: router_only_train_mode(inner))
        if start > 0 and getattr(inner, "specaug", None) is not None:
            iterator = _SpecAugSchedule(iterator, inner, reporter, start)
        try:
            with cpu_autocast(model, options), NonFiniteGuard.around(model, inner):
                return super().train_one_epoch(
                    model=model, iterator=iterator, optimizers=optimizers, schedulers=schedulers,
                    scaler=scaler, reporter=reporter, summary_writer=summary_writer,
                    options=options, distributed_option=distributed_option,
                )
        finally:
            cls._train_iters = reporter.get_total_count()


@contextlib.contextmanager
def cpu_autocast(model: torch.nn.Module, options):
    """With ``use_amp`` and ``ngpu == 0``: ``model``'s forward (the DDP wrapper's, if
    distributed) runs under bf16 CPU autocast for the duration of the block; the
    backward, called by ESPnet outside the forward, does not. Otherwise a no-op."""
    if not (getattr(options, "use_amp", False) and getattr(options, "ngpu", 0) == 0):
        yield
        return
    forward = model.forward

    def amp_forward(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return forward(*args, **kwargs)

    model.forward = amp_forward  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        del model.forward


class _BeforeEachBatch:
    """Iterator wrapper: calls ``hook()`` before yielding each batch (after ESPnet's
    ``model.train()`` at the start of the epoch)."""

    def __init__(self, iterator: Iterable, hook: Callable[[], None]):
        self.iterator, self.hook = iterator, hook

    def __len__(self):
        return len(self.iterator)

    def __iter__(self) -> Iterator:
        for batch in self.iterator:
            self.hook()
            yield batch


class _SpecAugSchedule(_BeforeEachBatch):
    """Before each batch, SpecAugment's module is put in training mode (applied) or eval
    mode (skipped by :meth:`MoEASRModel.encode_with_aux`) by the reporter's iteration
    count (batches finished so far, over all epochs)."""

    def __init__(self, iterator: Iterable, model, reporter, start: int):
        super().__init__(iterator, self._switch)
        self.model, self.reporter, self.start = model, reporter, start
        self._on = None

    def _switch(self) -> None:
        on = self.reporter.get_total_count() >= self.start
        if on != self._on:
            logging.info(
                f"SpecAugment {'on' if on else 'off'} from iteration "
                f"{self.reporter.get_total_count()} (--specaug_start_iter {self.start})"
            )
            self._on = on
        self.model.specaug.train(on and self.model.training)


class NonFiniteGuard:
    """Wraps a model's training forward: after a non-finite loss, restores the BatchNorm
    running statistics that forward updated, counts and warns, and adds the stat
    ``nonfinite_step`` (0 or 1, shaped [1] like ESPnet's gathered stats)."""

    def __init__(self, forward: Callable, model: torch.nn.Module):
        self.forward, self.model = forward, model
        self.num_nonfinite_steps = 0

    @classmethod
    @contextlib.contextmanager
    def around(cls, wrapper: torch.nn.Module, model: torch.nn.Module):
        """Guard ``wrapper``'s forward (a DDP wrapper, or ``model`` itself) for a block."""
        shadowed = wrapper.__dict__.get("forward")  # cpu_autocast's, if active
        guard = cls(wrapper.forward, model)
        wrapper.forward = guard  # an instance attribute shadows the class's forward
        try:
            yield guard
        finally:
            if shadowed is None:
                del wrapper.forward
            else:
                wrapper.forward = shadowed

    def running_stat_buffers(self) -> List[torch.Tensor]:
        """Buffers a training forward updates in place (BatchNorm running mean/var/count);
        listed per call, since .to()/.cuda() replace buffer objects."""
        return [
            b
            for m in self.model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.track_running_stats
            for b in m.buffers(recurse=False)
            if b is not None
        ]

    def __call__(self, *args, **kwargs):
        if not self.model.training:
            return self.forward(*args, **kwargs)
        buffers = self.running_stat_buffers()
        saved = [b.clone() for b in buffers]
        loss, stats, weight = self.forward(*args, **kwargs)
        finite = bool(torch.isfinite(loss).all())
        if not finite:
            # Through .data: batch norm saved these buffers for its backward; a versioned
            # in-place write would make loss.backward() raise.
            for buf, old in zip(buffers, saved):
                buf.data.copy_(old)
            self.num_nonfinite_steps += 1
            terms = ", ".join(
                f"{k}={float(v):.4g}" for k, v in stats.items() if k.startswith("loss") and v is not None
            )
            logging.warning(
                f"non-finite training loss ({float(loss.detach())}; {terms}) for a batch of "
                f"{int(weight)} utterances: normalisation statistics restored, the optimizer "
                f"step is skipped ({self.num_nonfinite_steps} such steps in this run so far). "
                "Many of them point to corrupt audio (NaN samples) or too high a learning rate."
            )
        stats["nonfinite_step"] = loss.new_tensor([0.0 if finite else 1.0])
        return loss, stats, weight
