"""Find a trained model given a packed zip, an unpacked directory or a hub repo id.

:func:`resolve_model` returns ``(config.yaml, model.pth)`` paths ready for
:class:`~espnet_plugins.inference.speech2text.Speech2Text`:

- a ``.zip`` from ``run.sh`` stage 11 is unpacked once into the cache
  (``$ESPNET_PLUGINS_CACHE``, default ``~/.cache/espnet_plugins``), keyed by its sha256;
- a directory is used as it is (an unpacked zip, or a hub snapshot);
- anything else is a Hugging Face repo id (``owner/name``, ``owner/name@revision``),
  fetched with ``huggingface_hub.snapshot_download``: its cache (``HF_HOME`` /
  ``HF_HUB_CACHE``), endpoint (``HF_ENDPOINT``), token (``HF_TOKEN`` or ``hf auth login``)
  and offline switch (``HF_HUB_OFFLINE``) are the user's. This package only sets
  ``HF_HUB_OFFLINE=1`` when the user has not set it (see ``espnet_plugins._offline``).

The config's relative paths (stats, token list, BPE model ...) are made absolute in a
copy (:func:`espnet_plugins.deploy.pack.localize_config`), so the model loads from
any working directory.
"""
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

from espnet_plugins.deploy.pack import localize_config, model_files, unpack_zip

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+(@[\w.\-/]+)?$")


def cache_dir() -> Path:
    return Path(os.environ.get("ESPNET_PLUGINS_CACHE", Path.home() / ".cache" / "espnet_plugins"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_from_hub(repo_id: str, revision: Optional[str] = None) -> Path:
    """``snapshot_download`` of ``repo_id`` (the user's cache, endpoint, token, offline mode)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision))
    except LocalEntryNotFoundError as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "")
        hint = (" HF_HUB_OFFLINE is set (tools/activate.sh and espnet_plugins default it to 1 unless you set it): "
                "export HF_HUB_OFFLINE=0 to download, or pass a local zip / directory."
                if offline.strip().lower() in ("1", "true", "yes", "on") else "")
        raise FileNotFoundError(f"{repo_id}: not in the hub cache and not downloadable ({e}).{hint}") from e


def model_dir_of(model_tag: Union[str, Path]) -> Path:
    """The unpacked directory of ``model_tag`` (zip, directory or hub repo id)."""
    path = Path(model_tag)
    if path.is_dir():
        return path
    if path.is_file():
        if path.suffix != ".zip":
            raise ValueError(f"{model_tag}: a packed model is a .zip (run.sh stage 11)")
        return unpack_zip(path, cache_dir() / f"{path.stem}-{sha256_file(path)[:16]}")
    tag = str(model_tag)
    if not _REPO_ID.match(tag):
        raise FileNotFoundError(f"{model_tag}: no such file or directory, and not a hub repo id (owner/name[@revision])")
    repo_id, _, revision = tag.partition("@")
    return download_from_hub(repo_id, revision or None)


def resolve_model(model_tag: Union[str, Path], workdir: Optional[Path] = None) -> Tuple[Path, Path]:
    """``(config, model file)`` of ``model_tag``; the config is a localized copy in
    ``workdir`` (default: a new temporary directory; the model's own files stay where they are)."""
    model_dir = model_dir_of(model_tag)
    files = model_files(model_dir)
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="espnet_plugins_cfg_"))
    config = localize_config(files["asr_train_config"], workdir / "config.yaml", model_dir)
    return config, files["asr_model_file"]
