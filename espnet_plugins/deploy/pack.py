"""A packed model: one zip holding everything ``config.yaml`` refers to.

Layout (ESPnet's ``meta.yaml`` included, so ``espnet2.main_funcs.pack_funcs.unpack``
reads it too)::

    meta.yaml            files: {asr_model_file: model.pth}, yaml_files: {asr_train_config: config.yaml}
    config.yaml          every file path rewritten to a name inside the zip
    model.pth
    feats_stats.npz      normalize_conf.stats_file
    tokens.txt, bpe.model, lang_list   when the config names them as files
    base/config.yaml ... a frozen-encoder frontend's base model config (its weights are in model.pth)
    RESULTS.md, ...      extra files (--option)

Paths inside the zip are relative; :func:`localize_config` turns them back into
absolute paths of an unpacked directory, wherever it is.
"""
import copy
import datetime
import io
import logging
import os
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import yaml

PathLike = Union[str, Path]
CONFIG = "config.yaml"
MODEL = "model.pth"
# config key (dotted for nested) -> name inside the zip
_KNOWN_FILES = {
    "token_list": "tokens.txt",
    "bpemodel": "bpe.model",
    "lang_list": "lang_list",
    "normalize_conf.stats_file": "feats_stats.npz",
}
# keys whose files are training-time only (data, shapes, checkpoints to start from)
_TRAINING_ONLY = {"train_data_path_and_name_and_type", "valid_data_path_and_name_and_type",
                  "train_shape_file", "valid_shape_file", "init_param", "output_dir", "config",
                  "pretrain_path", "valid_max_cache_size"}


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _set(d: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        d = d[part]
    d[last] = value


def _is_path(value) -> bool:
    return isinstance(value, str) and value not in ("", "none", "None")


def _file_refs(config: dict, base_dir: Path):
    """(dotted key, path) of every file the model needs at inference: the known keys,
    then any other string in a ``*_conf`` section that names an existing file."""
    for key in _KNOWN_FILES:
        value = _get(config, key)
        if _is_path(value):
            yield key, value
    for section, conf in config.items():
        if not section.endswith("_conf") or not isinstance(conf, dict) or section in _TRAINING_ONLY:
            continue
        for name, value in conf.items():
            key = f"{section}.{name}"
            if key not in _KNOWN_FILES and _is_path(value) and (base_dir / value).is_file():
                yield key, value


def pack_config(config_path: PathLike, files: Dict[str, Path], prefix: str = "", base_dir: PathLike = ".") -> dict:
    """``config_path``'s yaml with every file it needs renamed to ``prefix`` + a zip name;
    fills ``files`` (zip name -> source path). Relative paths are resolved against
    ``base_dir`` (where training ran), as ESPnet does."""
    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    config = copy.deepcopy(config)
    base_dir = Path(base_dir)
    frozen = config.get("frontend") == "frozen_encoder"
    for key, value in list(_file_refs(config, base_dir)):
        src = Path(value) if Path(value).is_absolute() else base_dir / value
        if not src.is_file():
            raise FileNotFoundError(
                f"{config_path}: {key} names {value}, which does not exist (relative to {base_dir.resolve()}); "
                "pack from the directory training ran in (the recipe directory) or pass --base_dir"
            )
        if frozen and key == "frontend_conf.asr_train_config":
            # the base model's config, its own files under base/; its weights are in the parent checkpoint
            base = pack_config(src, files, prefix=f"{prefix}base/", base_dir=base_dir)
            name = f"{prefix}base/{CONFIG}"
            files[name] = _yaml_bytes(base)
            _set(config, key, name)
            continue
        if frozen and key == "frontend_conf.asr_model_file":
            _set(config, key, None)
            continue
        name = prefix + _KNOWN_FILES.get(key, f"files/{key.replace('.', '_')}_{src.name}")
        if name in files and files[name] != src:
            raise ValueError(f"{config_path}: two different files would be packed as {name}: {files[name]} and {src}")
        files[name] = src
        _set(config, key, name)
    return config


def _yaml_bytes(d: dict) -> bytes:
    return yaml.safe_dump(d, allow_unicode=True, sort_keys=False).encode("utf-8")


def pack_model(
    asr_train_config: PathLike,
    asr_model_file: PathLike,
    outpath: PathLike,
    options: Iterable[PathLike] = (),
    base_dir: PathLike = ".",
) -> Dict[str, str]:
    """Write ``outpath`` (.zip, atomically); returns zip name -> source of its files.

    ``options``: extra files (RESULTS.md, a model card ...), stored under their base names.
    """
    files: Dict[str, Union[Path, bytes]] = {}
    config = pack_config(asr_train_config, files, base_dir=base_dir)
    if not Path(asr_model_file).is_file():
        raise FileNotFoundError(f"model file {asr_model_file} does not exist")
    files[CONFIG] = _yaml_bytes(config)
    files[MODEL] = Path(asr_model_file)
    for extra in options:
        extra = Path(extra)
        if not extra.is_file():
            raise FileNotFoundError(f"--option {extra} does not exist")
        if extra.name in files:
            raise ValueError(f"--option {extra}: the zip already has a {extra.name}")
        files[extra.name] = extra
    meta = {
        "files": {"asr_model_file": MODEL},
        "yaml_files": {"asr_train_config": CONFIG},
        "timestamp": datetime.datetime.now().timestamp(),
        "packed_by": "espnet_plugins.bin.pack",
    }
    try:
        import espnet2
        import torch

        meta.update(espnet=espnet2.__version__, torch=str(torch.__version__))
    except ImportError:  # pragma: no cover
        pass
    outpath = Path(outpath)
    outpath.parent.mkdir(parents=True, exist_ok=True)
    tmp = outpath.with_name(f".{outpath.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.yaml", _yaml_bytes(meta))
        for name, src in files.items():
            if isinstance(src, bytes):
                z.writestr(name, src)
            else:
                z.write(src, name)
    os.replace(tmp, outpath)
    logging.info(f"packed {outpath}: {', '.join(sorted(files))}")
    return {name: ("<generated>" if isinstance(src, bytes) else str(src)) for name, src in files.items()}


def unpack_zip(archive: PathLike, outdir: PathLike) -> Path:
    """Extract ``archive`` into ``outdir`` atomically (a half-extracted dir never looks done).

    An existing ``outdir`` holding ``meta.yaml`` is reused."""
    outdir = Path(outdir)
    if (outdir / "meta.yaml").is_file():
        return outdir
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = outdir.with_name(f".{outdir.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        if "meta.yaml" not in names and CONFIG not in names:
            raise ValueError(f"{archive}: no meta.yaml or {CONFIG} inside; is it a packed model (run.sh stage 11)?")
        z.extractall(tmp)  # zipfile drops absolute and '..' components
    try:
        os.replace(tmp, outdir)
    except OSError:  # another process unpacked it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return outdir


def model_files(model_dir: PathLike) -> Dict[str, Path]:
    """``{"asr_train_config": ..., "asr_model_file": ...}`` of an unpacked model dir."""
    model_dir = Path(model_dir)
    meta_path = model_dir / "meta.yaml"
    if meta_path.is_file():
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
        config = Path(meta.get("yaml_files", {}).get("asr_train_config", CONFIG))
        model = Path(meta.get("files", {}).get("asr_model_file", MODEL))
    else:
        config, model = Path(CONFIG), Path(MODEL)
        if not (model_dir / model).is_file():  # an experiment dir: ESPnet's averaged model, else the only *.pth
            pth = sorted(model_dir.glob("*.pth"))
            if (model_dir / "valid.loss.ave.pth").is_file():
                model = Path("valid.loss.ave.pth")
            elif len(pth) == 1:
                model = Path(pth[0].name)
    # ESPnet's unpack records absolute paths of the machine that packed: use the names here
    found = {}
    for key, path in (("asr_train_config", config), ("asr_model_file", model)):
        for candidate in (model_dir / path, model_dir / path.name):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            raise FileNotFoundError(f"{model_dir}: no {path} ({key}); is it an unpacked model (run.sh stage 11)?")
    return found


def localize_config(config_path: PathLike, out_path: PathLike, model_dir: Optional[PathLike] = None) -> Path:
    """Write ``config_path`` to ``out_path`` with relative file paths made absolute under
    ``model_dir`` (default: the config's directory); a nested base-model config is
    localized beside ``out_path``. Paths that already exist are kept."""
    config_path, out_path = Path(config_path), Path(out_path)
    model_dir = Path(model_dir) if model_dir is not None else config_path.parent
    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    for key, value in list(_refs_in_dir(config, model_dir)):
        target = model_dir / value
        if config.get("frontend") == "frozen_encoder" and key == "frontend_conf.asr_train_config":
            nested = out_path.with_name(f"{out_path.stem}.base.yaml")
            localize_config(target, nested, model_dir)
            target = nested
        _set(config, key, str(target.resolve()))
    out_path.write_bytes(_yaml_bytes(config))
    return out_path


def _refs_in_dir(config: dict, model_dir: Path):
    keys = list(_KNOWN_FILES) + [f"{s}.{n}" for s, c in config.items()
                                 if s.endswith("_conf") and isinstance(c, dict) for n in c]
    for key in keys:
        value = _get(config, key)
        if _is_path(value) and not Path(value).is_absolute() and (model_dir / value).is_file():
            yield key, value
