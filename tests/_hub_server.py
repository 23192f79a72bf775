"""A local stand-in for the Hugging Face hub (127.0.0.1), for tests that must not use the internet.

It serves the few endpoints ``huggingface_hub`` uses for ``snapshot_download`` /
``hf_hub_download`` (repo info, tree listing, ``resolve`` HEAD/GET) and for
``HfApi.create_repo`` + ``upload_folder`` (repo creation, pre-upload = every file
"regular", the ndjson commit with base64 contents). Point the client at it with
``HF_ENDPOINT=http://127.0.0.1:<port>``. Every request is recorded (method, path,
headers, names in lower case) so that tests can check what was sent, e.g. ``authorization``.

    with HubServer() as hub:
        hub.add_repo("me/model", {"config.yaml": b"..."})
        os.environ["HF_ENDPOINT"] = hub.url
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List
from urllib.parse import unquote, urlsplit


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    def __init__(self):
        self.repos: Dict[str, Dict] = {}  # repo_id -> {"sha": str, "files": {path: bytes}, "commits": int}
        self.requests: List[Dict] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _record(self, body: bytes = b""):
                with hub.lock:
                    hub.requests.append({"method": self.command, "path": self.path,
                                         "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})

            def _send(self, code: int, body: bytes = b"", headers: Dict[str, str] = None, head: bool = False):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head and body:
                    self.wfile.write(body)

            def _json(self, code: int, obj, head: bool = False):
                self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head)

            def _not_found(self, what: str, head: bool = False):
                self._send(404, json.dumps({"error": what}).encode(),
                           {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound",
                            "X-Error-Message": what}, head)

            def do_HEAD(self):
                self._record()
                self._get(head=True)

            def do_GET(self):
                self._record()
                self._get(head=False)

            def _get(self, head: bool):
                path = unquote(urlsplit(self.path).path)
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                    repo_id = "/".join(parts[2:4])
                    repo = hub.repos.get(repo_id)
                    if repo is None:
                        return self._not_found(f"Repository {repo_id} not found", head)
                    if parts[4] == "revision":
                        return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": repo["sha"], "private": False,
                                                "siblings": [{"rfilename": p} for p in sorted(repo["files"])],
                                                "lastModified": "2026-01-01T00:00:00.000Z", "tags": []}, head)
                    prefix = "/".join(parts[6:])
                    entries = [{"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": p}
                               for p, data in sorted(repo["files"].items())
                               if not prefix or p.startswith(prefix.rstrip("/") + "/")]
                    return self._json(200, entries, head)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo_id = "/".join(parts[:2])
                    repo = hub.repos.get(repo_id)
                    filename = "/".join(parts[4:])
                    if repo is None:
                        return self._not_found(f"Repository {repo_id} not found", head)
                    if filename not in repo["files"]:
                        return self._send(404, b"", {"X-Error-Code": "EntryNotFound",
                                                     "X-Repo-Commit": repo["sha"]}, head)
                    data = repo["files"][filename]
                    return self._send(200, data, {"X-Repo-Commit": repo["sha"],
                                                  "ETag": f'"{git_blob_sha1(data)}"',
                                                  "Content-Length": str(len(data)),
                                                  "Content-Type": "application/octet-stream"}, head)
                return self._not_found(f"no route for {path}", head)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not length and self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = self._read_chunked()
                self._record(body)
                path = unquote(urlsplit(self.path).path)
                parts = path.strip("/").split("/")
                if path == "/api/validate-yaml":  # the model card's metadata block
                    import yaml

                    content = json.loads(body)["content"]
                    front = content.split("---\n")[1] if content.startswith("---\n") else ""
                    try:
                        meta = yaml.safe_load(front)
                        ok = meta is None or isinstance(meta, dict)
                    except yaml.YAMLError:
                        ok = False
                    if not ok:
                        return self._json(400, {"errors": [{"message": "metadata is not a YAML mapping"}]})
                    return self._json(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create":
                    req = json.loads(body or b"{}")
                    repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                    with hub.lock:
                        exists = repo_id in hub.repos
                        hub.repos.setdefault(repo_id, {"sha": hashlib.sha1(repo_id.encode()).hexdigest(),
                                                       "files": {}, "commits": 0})
                    url = f"{hub.url}/{repo_id}"
                    if exists:
                        return self._json(409, {"error": "You already created this model repo", "url": url})
                    return self._json(200, {"url": url, "name": repo_id})
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("preupload", "commit"):
                    repo_id = "/".join(parts[2:4])
                    repo = hub.repos.get(repo_id)
                    if repo is None:
                        return self._not_found(f"Repository {repo_id} not found")
                    if parts[4] == "preupload":
                        files = json.loads(body or b"{}").get("files", [])
                        return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                           "shouldIgnore": False, "oid": None} for f in files]})
                    for line in body.decode().splitlines():
                        if not line.strip():
                            continue
                        item = json.loads(line)
                        if item["key"] == "file":
                            value = item["value"]
                            repo["files"][value["path"]] = base64.b64decode(value["content"])
                        elif item["key"] == "deletedFile":
                            repo["files"].pop(item["value"]["path"], None)
                    with hub.lock:
                        repo["commits"] += 1
                        repo["sha"] = hashlib.sha1(f"{repo_id}{repo['commits']}".encode()).hexdigest()
                    return self._json(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{repo['sha']}",
                                            "commitOid": repo["sha"], "pullRequestUrl": None})
                return self._not_found(f"no route for POST {path}")

            def _read_chunked(self) -> bytes:
                out = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add_repo(self, repo_id: str, files: Dict[str, bytes]) -> str:
        sha = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
        self.repos[repo_id] = {"sha": sha, "files": dict(files), "commits": 1}
        return sha

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
