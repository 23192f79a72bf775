"""Small file helpers shared by the data, decoding and scoring tools."""
import os
import tempfile
from pathlib import Path
from typing import Union


def atomic_write_text(path: Union[str, os.PathLike], text: str) -> None:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it over.

    A reader (or a rerun after a kill) never sees a half-written file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
