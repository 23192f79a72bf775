"""Fixtures for the real-corpus tests: tiny corpora in their published layouts, and a local
HTTP server on 127.0.0.1 that serves them like AI4Bharat's object store and the Hugging
Face hub (resolve URLs with the hub's headers, the tree API, HTTP ranges, a gated mode
that wants a token, and faults: a dropped connection, a corrupted body)."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import soundfile as sf

# A few words per script; transcripts are random sequences of them.
WORDS = {
    "hi": ["नमस्ते", "भारत", "पानी", "किताब", "घर", "समय", "लोग", "काम"],
    "mr": ["पाणी", "घर", "शाळा", "मराठी", "आई", "दिवस", "काम", "गाव"],
}
KB_NAMES = {"hi": "hindi", "mr": "marathi"}
MUCS_NAMES = {"hi": "Hindi", "mr": "Marathi"}
FLEURS_CFG = {"hi": "hi_in", "mr": "mr_in"}


def sentence(rng: np.random.Generator, lang: str, n: int = 3) -> str:
    return " ".join(rng.choice(WORDS[lang], size=n))


def audio(rng: np.random.Generator, fs: int = 16000, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    f0 = rng.uniform(150, 300)
    x = 0.3 * np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def write_audio(path: Path, x: np.ndarray, fs: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".m4a":  # AAC in MP4, as Kathbath publishes it (ffmpeg encodes it)
        wav = path.with_suffix(".tmp.wav")
        sf.write(wav, x, fs, subtype="PCM_16")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "aac", str(path)],
                       check=True, timeout=120)
        wav.unlink()
    else:
        sf.write(path, x, fs)


def tar_dir(archive: Path, root: Path, members) -> None:
    """Pack ``members`` (paths relative to ``root``) into ``archive`` (compression from the suffix)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    mode = "w:gz" if archive.name.endswith(".gz") else "w"
    with tarfile.open(archive, mode) as tar:
        for m in members:
            tar.add(root / m, arcname=str(m))


def make_kathbath(tree: Path, archives: Path, langs=("hi", "mr"), sizes=None, seed: int = 1) -> dict:
    """Kathbath's published layout under ``tree`` and its tar archives under ``archives``
    (``clean/train_audio.tar`` ... ``noisy/transcripts_n2w.tar``, members
    ``kb_data_<clean|noisy>_m4a/<language>/<split>/...``).  Returns ``{subset: n per language}``."""
    rng = np.random.default_rng(seed)
    sizes = sizes or {"train": 6, "valid": 2, "test_known": 2, "test": 2}
    audio_tars = {"train": "train_audio.tar", "valid": "valid_audio.tar", "test_known": "testkn_audio.tar",
                  "test": "testunk_audio.tar"}
    for kind in ("clean", "noisy"):
        base = f"kb_data_{kind}_m4a"
        trans_members = []
        for split, n in sizes.items():
            if kind == "noisy" and split not in ("test_known", "test"):
                continue
            audio_members = []
            for lang in langs:
                d = Path(base) / KB_NAMES[lang] / split
                lines = []
                for i in range(n):
                    # <unique id>-<speaker id>-<gender>; two utterances per speaker
                    name = f"84442{i:04d}{'12'[langs.index(lang)]}-{100 + i // 2}-{'mf'[i // 2 % 2]}.m4a"
                    # some copies nest the audio per speaker: the last file of each split does
                    rel = d / "audio" / (f"{100 + i // 2}/{name}" if i == n - 1 and n > 1 else name)
                    write_audio(tree / rel, audio(rng, 44100, rng.uniform(0.8, 1.3)), 44100)
                    audio_members.append(rel)
                    lines.append(f"{name}\t{sentence(rng, lang)}")
                (tree / d / "transcription_n2w.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
                trans_members.append(d / "transcription_n2w.txt")
            tar_dir(archives / kind / audio_tars[split], tree, audio_members)
        tar_dir(archives / kind / "transcripts_n2w.tar", tree, trans_members)
    return sizes


def make_fleurs(repo: Path, langs=("hi", "mr"), sizes=None, seed: int = 2) -> dict:
    """``data/<config>/<split>.tsv`` and ``data/<config>/audio/<split>.tar.gz`` (members
    ``<split>/<file>.wav``) as in the ``google/fleurs`` hub repo; the wavs are also left
    unpacked in ``<repo>/_unpacked`` for importer tests."""
    rng = np.random.default_rng(seed)
    sizes = sizes or {"train": 4, "dev": 2, "test": 2}
    for lang in langs:
        cfg = FLEURS_CFG[lang]
        for split, n in sizes.items():
            stage = repo / "_unpacked" / cfg
            rows, members = [], []
            for i in range(n):
                fname = f"{1000 + 37 * i + 7 * len(split)}{lang}.wav"
                x = audio(rng, 16000, rng.uniform(0.8, 1.3))
                write_audio(stage / split / fname, x, 16000)
                members.append(Path(split) / fname)
                raw = sentence(rng, lang) + "।"
                rows.append("\t".join([str(1500 + i), fname, raw, raw.rstrip("।"), "| ".join(raw), str(x.size),
                                       "FEMALE" if i % 2 else "MALE"]))
            (repo / "data" / cfg).mkdir(parents=True, exist_ok=True)
            (repo / "data" / cfg / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
            tar_dir(repo / "data" / cfg / "audio" / f"{split}.tar.gz", stage, members)
    return sizes


def make_indicvoices(repo: Path, langs=("hi", "mr"), sizes=None, seed: int = 3) -> dict:
    """``<language>/<split>-00000-of-00001.parquet`` with the published columns (audio embedded as
    FLAC bytes in ``audio_filepath``), two row groups per file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    sizes = sizes or {"train": 4, "valid": 2}
    names = {"hi": "hindi", "mr": "marathi"}
    for lang in langs:
        for split, n in sizes.items():
            rows = []
            for i in range(n):
                x = audio(rng, 16000, rng.uniform(0.8, 1.3))
                buf = io.BytesIO()
                sf.write(buf, x, 16000, format="FLAC")
                rows.append({"audio_filepath": {"bytes": buf.getvalue(), "path": f"{5550 + i}_chunk_{i}.flac"},
                             "text": sentence(rng, lang), "duration": x.size / 16000, "lang": lang,
                             "samples": x.size, "verbatim": "", "normalized": "", "speaker_id": f"S{lang}{i % 2}",
                             "scenario": "Read", "task_name": "Read", "gender": "Female"})
            table = pa.Table.from_pylist(rows)
            path = repo / names[lang] / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, row_group_size=max(1, n // 2))
    return sizes


def make_mucs(root: Path, langs=("hi", "mr"), sizes=None, seed: int = 4) -> dict:
    """``<Language>/<split>/{transcription.txt,audio/<utt>.wav}``, 8 kHz as published."""
    rng = np.random.default_rng(seed)
    sizes = sizes or {"train": 3, "test": 2}
    for lang in langs:
        for split, n in sizes.items():
            d = root / MUCS_NAMES[lang] / split
            lines = []
            for i in range(n):
                utt = f"{lang.upper()}{split[:2]}{i:04d}"
                write_audio(d / "audio" / f"{utt}.wav", audio(rng, 8000, rng.uniform(0.8, 1.3)), 8000)
                lines.append(f"{utt} {sentence(rng, lang)}")
            (d / "transcription.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sizes


class LocalServer:
    """Serve ``files`` (URL path -> bytes) on 127.0.0.1, as the object store and the hub do.

    * GET with ``Range: bytes=N-`` answers 206 with ``Content-Range``.
    * HEAD answers the hub's headers (``X-Repo-Commit``, ``ETag`` = sha256 of the body).
    * ``/api/datasets/<repo>/tree/<rev>/<dir>``: the hub's tree listing of ``files``.
    * ``token``: requests for paths starting with one of ``gated`` (default: all) without
      ``Authorization: Bearer <token>`` get 401, as for a gated hub repo.
    * ``drop_once``: paths whose first GET sends half the body and closes the connection.
    * ``corrupt``: paths served with one byte flipped (the ETag stays the true sha256).
    ``requests`` records ``(method, path, headers)`` of every request.
    """

    def __init__(self, files: dict[str, bytes], token: str | None = None, gated: tuple = ("/",)):
        self.files, self.token, self.gated = files, token, gated
        self.drop_once: set[str] = set()
        self.corrupt: set[str] = set()
        self.requests: list[tuple[str, str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _auth_ok(self) -> bool:
                if server.token is None or not self.path.startswith(server.gated):
                    return True
                return self.headers.get("authorization") == f"Bearer {server.token}"

            def _deny(self):
                body = b'{"error": "Access to this dataset is restricted"}'
                self.send_response(401)
                self.send_header("X-Error-Code", "GatedRepo")
                self.send_header("X-Error-Message", "Access to this dataset is restricted")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _not_found(self):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _route(self):
                path = self.path.split("?")[0]
                server.requests.append((self.command, self.path, dict(self.headers)))
                if not self._auth_ok():
                    return self._deny()
                if path.startswith("/api/") and "/tree/" in path:
                    return self._tree(path)
                if path not in server.files:
                    return self._not_found()
                body = server.files[path]
                sha = hashlib.sha256(body).hexdigest()
                if path in server.corrupt:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and self.command == "GET":
                    start = int(rng[6:].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Repo-Commit", "c" * 40)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if self.command == "HEAD":
                    return
                chunk = body[start:]
                if path in server.drop_once and self.command == "GET":
                    server.drop_once.discard(path)
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

            def _tree(self, path):
                # /api/datasets/<owner>/<name>/tree/<rev>/<dir>
                head, _, rest = path.partition("/tree/")
                repo = head[len("/api/datasets/"):]
                directory = rest.partition("/")[2].strip("/")
                prefix = f"/datasets/{repo}/resolve/main/{directory}/"
                items = [{"type": "file", "path": p[len(f'/datasets/{repo}/resolve/main/'):], "size": len(b),
                          "oid": hashlib.sha1(b).hexdigest(),
                          "lfs": {"oid": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 134}}
                         for p, b in sorted(server.files.items()) if p.startswith(prefix)]
                body = json.dumps(items).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = _route

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_tree(root: Path, url_prefix: str) -> dict[str, bytes]:
    """``{url_prefix/<relative path>: bytes}`` for every file under ``root``."""
    return {f"{url_prefix}/{p.relative_to(root).as_posix()}": p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}
