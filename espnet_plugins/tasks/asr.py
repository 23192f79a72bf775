"""``MoEASRTask``: ESPnet's ASR task plus this package's modules and language labels.

ESPnet 202511 has no plugin mechanism: ``ASRTask.build_model`` looks classes up in the
module-level ``ClassChoices`` objects of :mod:`espnet2.tasks.asr`. Registration
therefore adds our classes to *those* objects (lower-case keys). Because stock ESPnet
code (``espnet2.bin.asr_inference.Speech2Text``, ``espnet2.bin.pack``) builds models
through the same objects, a model trained with this task can be loaded by stock ESPnet
tools too, as long as :func:`register` ran first (importing this module runs it).

Language labels: the data key ``lang`` (an ``utt2lang`` file, loader type ``text``,
value = one language or a space-separated sequence for code-switched utterances) is
mapped to integer ids through ``--lang_list`` (a file with one language per line, or a
list), which is stored in ``config.yaml`` like ``--token_list`` so the packed model is
portable. Modules whose constructor takes ``langs`` get it injected from the list.
"""
import argparse
import inspect
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import espnet_plugins  # noqa: F401  (offline + quiet import hook, before espnet2)

import numpy as np
import torch
from espnet2.tasks import asr as espnet_asr
from espnet2.tasks.abs_task import optim_classes
from espnet2.tasks.asr import ASRTask
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.utils.types import str2bool, str_or_none
from typeguard import typechecked

from espnet_plugins.asr.espnet_model import MoEASRModel
from espnet_plugins.train.auto_schedule import resolve_auto_schedule
from espnet_plugins.train.sortagrad import SortaGradIterFactory
from espnet_plugins.train.router_only import freeze_all_but_router
from espnet_plugins.train.trainer import MoETrainer

LANG_KEY = "lang"

# name in espnet2.tasks.asr -> {config key: class}
_REGISTRY: Dict[str, Dict[str, type]] = {
    "model_choices": {"moe_espnet": MoEASRModel},
}


def _method_modules() -> None:
    """Add the method modules. Imported here (not at the top) to keep the table in one place.

    They need no optional dependency, so an ImportError here is a bug and propagates
    (swallowing it would leave only "invalid choice: 'blr_moe'")."""
    from espnet_plugins.asr.encoder.blr_moe_encoder import BLRMoEEncoder
    from espnet_plugins.asr.frontend.frozen_encoder_frontend import FrozenEncoderFrontend
    from espnet_plugins.asr.frontend.hf_encoder_frontend import HFEncoderFrontend
    from espnet_plugins.asr.preencoder.smear_projector import SmearProjector

    _REGISTRY.setdefault("encoder_choices", {})["blr_moe"] = BLRMoEEncoder
    _REGISTRY.setdefault("preencoder_choices", {})["smear_moe"] = SmearProjector
    _REGISTRY.setdefault("frontend_choices", {})["frozen_encoder"] = FrozenEncoderFrontend
    _REGISTRY.setdefault("frontend_choices", {})["hf_encoder"] = HFEncoderFrontend


def _publish_signature(cls: type) -> None:
    """Give a model class whose ``__init__`` takes ``*args, **kwargs`` for ESPnet's
    arguments one signature (ESPnet's + its own keyword arguments): ``--print_config``
    and config checks read ``inspect.signature(__init__)``."""
    init = cls.__init__
    parent = list(inspect.signature(cls.__mro__[1].__init__).parameters.values())
    own = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
           for p in inspect.signature(init).parameters.values() if p.kind == inspect.Parameter.KEYWORD_ONLY]
    init.__signature__ = inspect.signature(init).replace(parameters=parent + own)


def register() -> None:
    """Add this package's classes to ESPnet's ASR ClassChoices (idempotent)."""
    for choices_name, classes in _REGISTRY.items():
        choices = getattr(espnet_asr, choices_name)
        for key, cls in classes.items():
            if choices.base_type is not None and not issubclass(cls, choices.base_type):
                raise TypeError(f"{cls} must subclass {choices.base_type} to be a {choices_name} entry")
            choices.classes[key.lower()] = cls


_method_modules()
register()
_publish_signature(MoEASRModel)


def read_lang_list(lang_list: Union[str, Sequence[str]]) -> List[str]:
    """``--lang_list`` as a list: a file with one language per line, or already a list."""
    if isinstance(lang_list, str):
        with open(lang_list, encoding="utf-8") as f:
            langs = [line.strip() for line in f if line.strip()]
    else:
        langs = [str(x) for x in lang_list]
    if len(set(langs)) != len(langs):
        raise ValueError(f"--lang_list has duplicate languages: {langs}")
    return langs


class LanguageLabelPreprocessor:
    """Wraps ESPnet's preprocessor: turns the ``lang`` string into an int64 id array.

    Unknown languages raise an error naming the utterance, so a data dir that does not
    match the model's ``lang_list`` fails loudly instead of training on wrong labels.
    """

    def __init__(self, inner: Optional[Callable], langs: Sequence[str]):
        self.inner = inner
        self.lang2id = {lang: i for i, lang in enumerate(langs)}

    def __call__(self, uid: str, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        if LANG_KEY in data and isinstance(data[LANG_KEY], str):
            try:
                ids = [self.lang2id[x] for x in data[LANG_KEY].split()]
            except KeyError as e:
                raise ValueError(
                    f"utterance {uid}: language {e.args[0]!r} is not in the lang_list "
                    f"{list(self.lang2id)}; fix utt2lang or regenerate the lang_list"
                ) from None
            data[LANG_KEY] = np.array(ids, dtype=np.int64)
        return self.inner(uid, data) if self.inner is not None else data


class MoEASRTask(ASRTask):
    """ASR task with MoE modules, language labels, router-only training and the
    trainer's SpecAugment schedule (:class:`MoETrainer`)."""

    trainer = MoETrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        # Our model behaves exactly like ESPnet's when no module reports aux losses, and
        # adds them (LID, load balance) when one does; `model: espnet` still works.
        parser.set_defaults(model="moe_espnet")
        group = parser.add_argument_group(description="MoE / language related")
        group.add_argument(
            "--lang_list",
            type=str_or_none,
            default=None,
            help="File with one language per line (order = expert / LID class order). "
            "Needed by models with language experts or a LID loss.",
        )
        group.add_argument(
            "--train_router_only",
            type=str2bool,
            default=False,
            help="Router augmentation: freeze every parameter except the language "
            "router(s); training data then needs only speech + lang (no text).",
        )
        group.add_argument(
            "--router_lr_scale",
            type=float,
            default=1.0,
            help="Learning rate of the language router(s) = optim_conf.lr x this "
            "(its own optimizer parameter group; the lr scheduler scales both groups "
            "alike). 1.0 = one group, as stock ESPnet.",
        )

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        if cls._router_only and not inference:
            return ("speech", LANG_KEY)
        return super().required_data_names(train, inference)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        names = super().optional_data_names(train, inference)
        return names + ((LANG_KEY,) if not cls._router_only else ("text",))

    _router_only = False

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        # required/optional_data_names are classmethods without access to args.
        cls._router_only = bool(getattr(args, "train_router_only", False))
        if not args.collect_stats:
            resolve_auto_schedule(args)  # scheduler_conf max_steps: auto -> epochs x batches (before it is built)
        super().main_worker(args)

    @classmethod
    @typechecked
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        inner = super().build_preprocess_fn(args, train)
        if getattr(args, "lang_list", None) is None:
            return inner
        return LanguageLabelPreprocessor(inner, read_lang_list(args.lang_list))

    @classmethod
    def build_iter_factory(cls, args: argparse.Namespace, distributed_option, mode: str, kwargs=None):
        factory = super().build_iter_factory(args, distributed_option, mode, kwargs)
        epochs = getattr(args, "sortagrad_epochs", 0)
        if mode == "train" and epochs > 0:
            factory = SortaGradIterFactory(factory, epochs, args.sort_batch)
        return factory

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module) -> List[torch.optim.Optimizer]:
        scale = getattr(args, "router_lr_scale", 1.0)
        if scale == 1.0:
            return super().build_optimizers(args, model)
        if scale <= 0:
            raise ValueError(f"--router_lr_scale must be > 0, got {scale}")
        if args.sharded_ddp or args.exclude_weight_decay:
            raise ValueError(
                "--router_lr_scale builds its own parameter groups and cannot be combined "
                "with --sharded_ddp or --exclude_weight_decay; drop one of them"
            )
        router = model.router_parameters() if hasattr(model, "router_parameters") else []
        if not router:
            raise ValueError(
                f"--router_lr_scale {scale} needs a model with a language router "
                "(e.g. encoder: blr_moe); this model has none: remove the option"
            )
        ids = {id(p) for p in router}
        rest = [p for p in model.parameters() if id(p) not in ids]
        optim_class = optim_classes.get(args.optim)
        if optim_class is None:
            raise ValueError(f"must be one of {list(optim_classes)}: {args.optim}")
        lr = args.optim_conf.get("lr")
        if lr is None:
            raise ValueError("--router_lr_scale needs optim_conf.lr to be set")
        groups = [{"params": rest}, {"params": router, "lr": lr * scale}]
        return [optim_class(groups, **args.optim_conf)]

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> AbsESPnetModel:
        langs = None
        if getattr(args, "lang_list", None) is not None:
            langs = read_lang_list(args.lang_list)
            args.lang_list = langs  # stored in config.yaml: the packed model is portable
            for name in ("frontend", "preencoder", "encoder", "model"):
                _inject_langs(args, name, langs)
        model = super().build_model(args)
        if getattr(args, "train_router_only", False):
            freeze_all_but_router(model)  # MoETrainer keeps the frozen part in eval mode
        return model


def _inject_langs(args: argparse.Namespace, name: str, langs: List[str]) -> None:
    """Pass ``langs`` to a module whose constructor takes it, unless the config set it."""
    key = getattr(args, name, None)
    if key is None:
        return
    cls = getattr(espnet_asr, f"{name}_choices").get_class(key)
    conf = getattr(args, f"{name}_conf")
    if "langs" in inspect.signature(cls.__init__).parameters:
        if conf.get("langs") not in (None, langs):
            raise ValueError(
                f"{name}_conf.langs={conf['langs']} disagrees with --lang_list {langs}; "
                f"remove {name}_conf.langs or fix the lang_list"
            )
        conf["langs"] = list(langs)
