"""Downloads for the real-corpus recipe: resumable, verified, atomic; safe archive extraction.

* :func:`fetch_url` — one HTTP(S) file (Kathbath's archives).  ``requests`` streams it into
  ``<dest>.part``, resuming with an HTTP ``Range`` request after an interruption; the size
  (``Content-Length`` / ``Content-Range``, or the published one) and a published checksum
  are checked before the ``.part`` file is renamed to ``dest``, so a file under its final
  name is always complete.  A complete file is skipped on a rerun.
* :func:`hub_download` — one file of a Hugging Face dataset repo (FLEURS, IndicVoices)
  through ``huggingface_hub`` (it resumes, writes atomically and sends the user's token
  from ``HF_TOKEN`` or its credential store — this module never sees the token); the
  file is then checked against the sha256 the hub publishes for LFS files.
* :func:`safe_extract` — unpack a tar archive with tarfile's ``data`` filter: no member may
  land outside the target dir (``../``, absolute paths, links pointing out), no device
  files, no setuid bits.

Why not hand everything to one library: ``huggingface_hub`` only serves the hub, and
neither it nor ``requests`` verifies a published checksum on a plain URL, resumes it, or
names what to do on failure; the few lines here do that uniformly (tested on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import tarfile
import time
from pathlib import Path
from typing import Optional, Union

__all__ = ["DownloadError", "fetch_url", "hub_download", "safe_extract", "sha256_file"]

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
_CHUNK = 1 << 16  # small enough that a dropped connection loses little
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(RuntimeError):
    """A download or extraction failed; the message names the URL (or archive) and what to do."""


def sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _what_to_do(dest: Path) -> str:
    return (f"rerun to try again (a partial download resumes), or fetch the file by other means and put it at "
            f"{dest}")


class _Progress:
    """Progress on stderr: a tqdm bar on a terminal, a log line every 10 % (or 30 s) otherwise."""

    def __init__(self, name: str, total: Optional[int], done: int):
        self.name, self.total, self.done = name, total, done
        self.bar = None
        self.next_pct = (100 * done // total // 10 + 1) * 10 if total else 10  # a resumed download starts higher
        self.last_t = time.monotonic()
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=name, file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        pct = 100 * self.done // self.total if self.total else None
        if (pct is not None and pct >= self.next_pct) or now - self.last_t >= 30:
            log.info("%s: %s%s", self.name, _mb(self.done),
                     f" of {_mb(self.total)} ({pct} %)" if pct is not None else "")
            if pct is not None:
                self.next_pct = (pct // 10 + 1) * 10
            self.last_t = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _check_and_commit(url: str, part: Path, dest: Path, size: Optional[int], sha256: Optional[str]) -> None:
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise DownloadError(f"{url}: downloaded {got} bytes, expected {size}; the partial file was removed; "
                            f"{_what_to_do(dest)}")
    if sha256:
        digest = sha256_file(part)
        if digest != sha256.lower():
            part.unlink()
            raise DownloadError(f"{url}: checksum mismatch (sha256 {digest}, published {sha256}); the download was "
                                "removed. The server may have sent an error page or a changed file; "
                                f"{_what_to_do(dest)}")
    os.replace(part, dest)


def fetch_url(url: str, dest: PathLike, size: Optional[int] = None, sha256: Optional[str] = None,
              retries: int = 3, timeout: float = 60.0, page: Optional[str] = None) -> Path:
    """Download ``url`` to ``dest``; return ``dest``.

    ``size`` / ``sha256``: published values to verify (``size`` defaults to what the server
    announces).  An existing ``dest`` is complete (only a verified download is renamed to
    it) and is kept.  ``page``: a web page to name in errors (where the corpus is described).
    """
    import requests

    dest = Path(dest)
    if dest.is_file():
        if size is not None and dest.stat().st_size != size:
            raise DownloadError(f"{dest}: {dest.stat().st_size} bytes, but {url} is published as {size}; "
                                "delete it to download again")
        log.info("%s: complete, skipping the download", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    hint = f" (see {page})" if page else ""
    attempt = 0
    while True:
        have = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
                if r.status_code == 416 and have:  # nothing left: the part is already whole
                    _check_and_commit(url, part, dest, size, sha256)
                    return dest
                if r.status_code in (401, 403):
                    raise DownloadError(f"{url}: access denied (HTTP {r.status_code}){hint}; the corpus may need a "
                                        f"licence or login: download it by hand and put it at {dest}")
                if r.status_code == 404:
                    raise DownloadError(f"{url}: not found (HTTP 404){hint}; the file may have moved: check the "
                                        f"corpus page, or download it by hand and put it at {dest}")
                r.raise_for_status()
                if have and r.status_code == 206:
                    mode = "ab"
                    total = r.headers.get("Content-Range", "").rpartition("/")[2]
                    total = int(total) if total.isdigit() else None
                    log.info("%s: resuming at %s", url, _mb(have))
                else:  # a fresh start, or a server that ignores Range: start over
                    mode, have = "wb", 0
                    length = r.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                if size is not None and total is not None and total != size:
                    raise DownloadError(f"{url}: the server announces {total} bytes, the published size is {size}; "
                                        f"the file changed on the server{hint}")
                expected = size if size is not None else total
                progress = _Progress(dest.name, expected, have)
                try:
                    with open(part, mode) as f:
                        for block in r.iter_content(_CHUNK):
                            f.write(block)
                            progress.update(len(block))
                finally:
                    progress.close()
            _check_and_commit(url, part, dest, expected, sha256)
            return dest
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"{url}: download failed after {retries} retries ({e}){hint}; "
                                    f"{_what_to_do(dest)}") from e
            log.warning("%s: %s; retrying (%d/%d), resuming from the partial file", url, e, attempt, retries)
            time.sleep(min(2 ** attempt, 30))
        except requests.HTTPError as e:
            raise DownloadError(f"{url}: HTTP error {e.response.status_code}{hint}; {_what_to_do(dest)}") from e


def hub_download(repo_id: str, filename: str, local_dir: PathLike, repo_type: str = "dataset",
                 revision: str = "main", page: Optional[str] = None) -> Path:
    """One file of a hub repo into ``local_dir/<filename>`` (the repo's own layout); return its path.

    The token, if any, is the hub library's business (``HF_TOKEN`` or ``hf auth login``):
    it is never passed here, on a command line or into a log.  LFS files are checked
    against the sha256 the hub publishes; a note under ``local_dir/.verified`` records it,
    and a verified file is skipped on a rerun without asking the hub.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError)

    url = hf_hub_url(repo_id, filename, repo_type=repo_type, revision=revision)
    page = page or f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    local_dir = Path(local_dir)
    note = local_dir / ".verified" / (filename + ".sha256")
    if note.is_file() and (local_dir / filename).is_file():  # verified earlier: no network needed
        log.info("%s: complete and verified, skipping", local_dir / filename)
        return local_dir / filename
    login = ("accept the dataset's terms at " + page + " with your account, then log in with `hf auth login` "
             "or export HF_TOKEN (never pass a token on a command line)")
    try:
        path = Path(hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision,
                                    local_dir=local_dir))
        meta = get_hf_file_metadata(url)
    except GatedRepoError as e:
        raise DownloadError(f"{url}: the dataset is gated and this account has no access; {login}") from e
    except RepositoryNotFoundError as e:
        raise DownloadError(f"{url}: repository not found or not accessible (HTTP 401/404); if it is gated, "
                            f"{login}") from e
    except EntryNotFoundError as e:
        raise DownloadError(f"{url}: not found (HTTP 404) in {repo_id}; check the file name and the repo at "
                            f"{page}") from e
    except LocalEntryNotFoundError as e:
        raise DownloadError(f"{url}: cannot download it (no connection, or not found); check your connection "
                            f"and {page}, or copy the file to {local_dir / filename}") from e
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        raise DownloadError(f"{url}: HTTP error {status}; if the dataset is gated, {login}") from e
    etag = (meta.etag or "").strip('"').lower()
    if _SHA256.match(etag):
        digest = sha256_file(path)
        if digest != etag:
            path.unlink()
            raise DownloadError(f"{url}: checksum mismatch (sha256 {digest}, the hub publishes {etag}); "
                                "the download was removed; rerun to download it again")
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(etag + "\n")
    return path


def safe_extract(archive: PathLike, dest: PathLike) -> Path:
    """Extract the tar ``archive`` (any compression) into ``dest`` with tarfile's ``data`` filter.

    A member that would land outside ``dest`` (``../``, a link pointing out) is an error
    naming the member, and nothing is marked done.  A marker ``.<archive>.extracted`` in
    ``dest`` makes a rerun skip a finished extraction.
    """
    archive, dest = Path(archive), Path(dest)
    marker = dest / f".{archive.name}.extracted"
    if marker.is_file():
        log.info("%s: already extracted into %s, skipping", archive, dest)
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    log.info("extracting %s into %s", archive, dest)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as e:
        raise DownloadError(f"{archive}: refusing to extract member {e.tarinfo.name!r} ({e}); the archive is "
                            "damaged or malicious: delete it and download it again") from e
    except (tarfile.TarError, EOFError) as e:
        raise DownloadError(f"{archive}: not a readable tar archive ({e}); delete it and download it again") from e
    marker.touch()
    return dest
