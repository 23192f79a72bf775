"""Keep ESPnet's import quiet and offline.

Every entry point imports :mod:`espnet_plugins` first, which calls :func:`setup`.
Two third-party imports are noisy on machines without internet:

* ``g2p_en`` (pulled in by ``espnet2.text``) calls ``nltk.download`` at import time,
  which prints connection errors: we make ``nltk.download`` a silent no-op while that
  module executes (English G2P is never used by this toolkit).
* ``espnet2.legacy.nets.pytorch_backend.transformer.attention`` prints "Failed to import Flash
  Attention" on every import when ``flash_attn`` is absent (always, on CPU).

Both are handled by a meta-path hook that wraps just those modules' execution, so the
cost is zero for processes that never import them.
"""
import contextlib
import importlib.abc
import io
import os
import sys

_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "NLTK_DATA": os.path.join(os.path.dirname(__file__), "_nltk_data_unused"),
}
_QUIET_MODULES = {"g2p_en.g2p", "espnet2.legacy.nets.pytorch_backend.transformer.attention"}


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        with contextlib.ExitStack() as stack:
            if module.__name__ == "g2p_en.g2p":
                import nltk

                real = nltk.download
                nltk.download = lambda *args, **kwargs: False
                stack.callback(setattr, nltk, "download", real)
            else:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            self._inner.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _QUIET_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def setup() -> None:
    """Set offline env defaults (user settings win) and install the quiet-import hook."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
