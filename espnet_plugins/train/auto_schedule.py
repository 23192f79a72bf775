"""``scheduler_conf.max_steps: auto``: a fixed-length lr schedule sized to the corpus.

ESPnet's ``tristagelr`` (``max_steps``) and ``exponentialdecaywarmup`` (``total_steps``)
run for a fixed number of optimizer updates, which depends on the corpus size,
``batch_bins`` and ``max_epoch``; a number written for one corpus leaves the lr at its
peak (or cuts the decay) on another. With the value ``auto`` the task replaces it, before
the scheduler is built, by ``max_epoch x batches per epoch // accum_grad``, where the
batch count comes from ESPnet's own batch sampler over the training shape files (the
same call ESPnet's sequence iterator makes), or ``num_iters_per_epoch`` when set. The
tri-stage warm-up and hold are ratios of ``max_steps``, so they follow. The resolved
number is what ``config.yaml`` records; the trainer's schedule-length check still runs.
"""
import logging
from pathlib import Path
from typing import Optional

# A named logger: logging.info() on the root before ESPnet's basicConfig would install a
# WARNING-level handler and silence every INFO line of the training log.
logger = logging.getLogger(__name__)
AUTO = "auto"
LENGTH_KEYS = ("max_steps", "total_steps")  # tristagelr, exponentialdecaywarmup (and alike)


def auto_key(conf: Optional[dict]) -> Optional[str]:
    """The schedule-length key of ``conf`` whose value is ``auto``, or None."""
    for key in LENGTH_KEYS:
        if isinstance((conf or {}).get(key), str) and conf[key].strip().lower() == AUTO:
            return key
    return None


def planned_updates(batches: int, max_epoch: int, accum_grad: int) -> int:
    """Optimizer updates of a training: the trainer's count (``planned_updates`` there)."""
    return max_epoch * batches // max(accum_grad, 1)


def count_train_batches(args) -> int:
    """Mini-batches per training epoch, as ESPnet's sequence iterator will build them."""
    if getattr(args, "num_iters_per_epoch", None):
        return int(args.num_iters_per_epoch)
    if getattr(args, "iterator_type", "sequence") != "sequence" or getattr(args, "multiple_iterator", False):
        raise ValueError(
            f"scheduler_conf max_steps/total_steps: auto needs iterator_type: sequence (got "
            f"{args.iterator_type!r}{', multiple_iterator' if getattr(args, 'multiple_iterator', False) else ''}); "
            f"set the number of updates (max_epoch x batches per epoch / accum_grad) instead"
        )
    if not args.train_shape_file:
        raise ValueError("scheduler_conf max_steps/total_steps: auto needs --train_shape_file (the batch count "
                         "comes from it); pass it or set the number of updates")
    from espnet2.samplers.build_batch_sampler import build_batch_sampler

    category = Path(args.train_data_path_and_name_and_type[0][0]).parent / "utt2category" \
        if args.train_data_path_and_name_and_type else None
    world = 1
    if getattr(args, "multiprocessing_distributed", False) or getattr(args, "dist_world_size", None):
        world = int(args.dist_world_size or args.ngpu or 1)
    sampler = build_batch_sampler(
        type=args.batch_type,
        shape_files=args.train_shape_file,
        fold_lengths=args.fold_length,
        batch_size=args.batch_size,
        batch_bins=args.batch_bins,
        sort_in_batch=args.sort_in_batch,
        sort_batch=args.sort_batch,
        drop_last=args.drop_last_iter,
        min_batch_size=world if world > 1 else args.min_batch_size,
        utt2category_file=str(category) if category is not None and category.exists() else None,
    )
    return len(list(sampler))


def resolve_auto_schedule(args, batches: Optional[int] = None) -> Optional[int]:
    """Replace ``auto`` in ``args.scheduler_conf`` by the planned updates; return them (None: nothing to do).

    ``batches``: the batch count per epoch, if already known (else counted from the shape files).
    """
    key = auto_key(getattr(args, "scheduler_conf", None))
    if key is None or getattr(args, "scheduler", "") is None:  # scheduler: null (e.g. router augmentation)
        return None
    batches = count_train_batches(args) if batches is None else batches
    updates = planned_updates(batches, args.max_epoch, args.accum_grad)
    if updates < 1:
        raise ValueError(f"scheduler_conf.{key}: auto gives {updates} updates ({args.max_epoch} epochs x {batches} "
                         f"batches / accum_grad {args.accum_grad}); is the training set empty?")
    args.scheduler_conf[key] = updates
    logger.info(f"scheduler_conf.{key}: auto -> {updates} updates ({args.max_epoch} epochs x {batches} batches / "
                 f"accum_grad {args.accum_grad})")
    return updates
