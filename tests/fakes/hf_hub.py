"""A local server speaking the Hugging Face Hub's file API, for tests: code under test uses the real
``huggingface_hub`` client (``HF_ENDPOINT=http://127.0.0.1:<port>``) on tiny repos laid out as the
real ones, and plain HTTP sources are served beside them.

What the client's ``snapshot_download`` / ``hf_hub_download`` ask for, answered as the Hub does:

    GET  /api/{models,datasets}/<repo>/revision/<rev>   repo info (``sha``, ``siblings``, ``gated``)
    GET  /api/{models,datasets}/<repo>/tree/<rev>?recursive=true   file list with sizes and LFS
         ids, in pages linked by a ``Link: <...>; rel="next"`` header (``page_size`` entries each)
    HEAD/GET /<repo>/resolve/<rev>/<file>, /datasets/<repo>/resolve/<rev>/<file>
         small files: 200 with ``ETag`` (git blob sha1), ``X-Repo-Commit``, ``Content-Length``;
         LFS files (``.gitattributes`` patterns): 302 to the "CDN" host (``localhost`` where the
         Hub is ``127.0.0.1``, so the client treats it as another host) with ``X-Linked-Etag``
         (sha256), ``X-Linked-Size`` and ``X-Repo-Commit``
    GET  /cdn/<sha256>, /files/<path>   bytes, honouring ``Range`` (206 + ``Content-Range``)

Errors carry ``X-Error-Code`` as the Hub's do: ``RepoNotFound`` (401), ``GatedRepo`` (401 without
a token, 403 with a token not granted), ``EntryNotFound`` / ``RevisionNotFound`` (404).
``cut(name, after=N, then_fail=K)`` makes the next download of a file (repo path or ``/files``
path) stop after N bytes and the K requests after it answer 503: an interrupted download.
``requests`` records (method, path, Range header) of every request.

    from tests.fakes.hf_hub import hf_hub  # the fixture: sets HF_ENDPOINT, HF_TOKEN unset

    def test_x(hf_hub):
        hf_hub.add("org/model", {"config.json": b"{}", "model.safetensors": b"..."})
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import http.server
import json
import re
import threading
import urllib.parse

import pytest

# The .gitattributes the Hub writes into every new repo (its LFS patterns, abridged).
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.gz", "*.h5", "*.model", "*.msgpack",
    "*.npy", "*.npz", "*.onnx", "*.parquet", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.safetensors",
    "*.tar", "*.tar.*", "*.tgz", "*.zip", "*.zst", "*tfevents*", "*.jpg", "*.png"))


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclasses.dataclass
class Repo:
    repo_id: str
    repo_type: str
    files: dict[str, bytes]
    gated: bool = False
    granted: frozenset[str] = frozenset()

    @property
    def sha(self) -> str:
        h = hashlib.sha1()
        for path in sorted(self.files):
            h.update(path.encode() + git_blob_sha1(self.files[path]).encode())
        return h.hexdigest()

    def is_lfs(self, path: str) -> bool:
        attrs = self.files.get(".gitattributes", b"").decode()
        pats = [line.split()[0] for line in attrs.splitlines() if "filter=lfs" in line]
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], p)
                   for p in pats)

    def entry(self, path: str) -> dict:
        data = self.files[path]
        out = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
        if self.is_lfs(path):
            out["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                          "pointerSize": 134}
        return out


@dataclasses.dataclass
class Cut:
    after: int
    then_fail: int


class FakeHub:
    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.urls: dict[str, bytes] = {}  # plain HTTP files under /files/
        self.blobs: dict[str, bytes] = {}  # sha256 -> bytes, behind the "CDN"
        self.cuts: dict[str, Cut] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.page_size = 1000
        self.endpoint = ""  # http://127.0.0.1:<port>
        self.cdn = ""  # http://localhost:<port>

    def add(self, repo_id: str, files: dict[str, bytes], *, repo_type: str = "model",
            gated: bool = False, granted: tuple[str, ...] = ()) -> Repo:
        """A repo holding ``files`` (plus the Hub's default ``.gitattributes``)."""
        files = {".gitattributes": GITATTRIBUTES.encode(), **files}
        repo = Repo(repo_id, repo_type, files, gated, frozenset(granted))
        self.repos[(repo_type, repo_id)] = repo
        for path, data in files.items():
            if repo.is_lfs(path):
                self.blobs[hashlib.sha256(data).hexdigest()] = data
        return repo

    def add_url(self, path: str, data: bytes) -> str:
        """A plain HTTP file; returns its URL."""
        self.urls[path] = data
        return f"{self.endpoint}/files/{path}"

    def cut(self, name: str, *, after: int, then_fail: int = 0) -> None:
        self.cuts[name] = Cut(after, then_fail)

    def ranges(self, suffix: str) -> list[str | None]:
        """The Range headers of the GETs whose path ends with ``suffix``."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith(suffix)]


_API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree)/([^/]+)(/.*)?$")
_RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    # -------------------------------------------------------------------------- responses

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, head: bool, commit: str = "") -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message,
                   "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers, head)

    def _json(self, obj, headers: dict | None = None) -> None:
        self._send(200, json.dumps(obj).encode(),
                   {"Content-Type": "application/json", **(headers or {})})

    def _bytes(self, name: str, data: bytes, head: bool, headers: dict) -> None:
        """``data`` honouring Range, and a planned cut of ``name``."""
        cut = self.hub.cuts.get(name)
        if cut is not None and cut.after < 0:  # after the cut: failing
            if cut.then_fail > 0 and not head:
                cut.then_fail -= 1
                return self._error(503, "ServiceUnavailable", "try again later", head)
            del self.hub.cuts[name]
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            if not m or int(m.group(1)) >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head)
            start, status = int(m.group(1)), 206
            headers = {**headers,
                       "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        body = data[start:]
        if cut is not None and cut.after >= 0 and not head:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, str(v))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:cut.after])
            self.wfile.flush()
            cut.after = -1
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._send(status, body, {"Accept-Ranges": "bytes", **headers}, head)

    # -------------------------------------------------------------------------- routing

    def _route(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        self.hub.requests.append((self.command, path, self.headers.get("Range")))
        if path.startswith("/cdn/"):
            data = self.hub.blobs.get(path[5:])
            if data is None:
                return self._send(404, b"", {}, head)
            return self._bytes(self._cdn_name(path[5:]), data, head,
                               {"ETag": f'"{path[5:]}"'})
        if path.startswith("/files/"):
            data = self.hub.urls.get(path[7:])
            if data is None:
                return self._send(404, b"not found", {}, head)
            return self._bytes(path, data, head, {"ETag": f'"{git_blob_sha1(data)}"'})
        m = _API.match(url.path)
        if m:
            return self._api(m, urllib.parse.parse_qs(url.query), head)
        m = _RESOLVE.match(url.path)
        if m:
            return self._resolve(m, head)
        self._send(404, b"no such route", {}, head)

    def _cdn_name(self, sha256: str) -> str:
        for repo in self.hub.repos.values():
            for path, data in repo.files.items():
                if hashlib.sha256(data).hexdigest() == sha256 and path in self.hub.cuts:
                    return path
        return sha256

    def _repo(self, kind: str, repo_id: str, head: bool) -> Repo | None:
        repo = self.hub.repos.get((kind, repo_id))
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found", head)
        return repo

    def _revision_ok(self, repo: Repo, rev: str, head: bool) -> bool:
        if urllib.parse.unquote(rev) in ("main", repo.sha):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        return False

    def _api(self, m: re.Match, query: dict, head: bool) -> None:
        kind, repo_id, what, rev, sub = m.groups()
        repo = self._repo(kind[:-1], repo_id, head)
        if repo is None or not self._revision_ok(repo, rev, head):
            return
        if what == "revision":
            return self._json({
                "_id": repo.sha[:24], "id": repo_id, "sha": repo.sha, "private": False,
                "gated": "manual" if repo.gated else False, "disabled": False,
                "lastModified": "2024-06-01T00:00:00.000Z", "tags": [], "downloads": 0,
                "likes": 0, "siblings": [{"rfilename": p} for p in sorted(repo.files)]})
        prefix = urllib.parse.unquote(sub or "").strip("/")
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        entries, dirs = [], set()
        for p in sorted(repo.files):
            if prefix and not p.startswith(prefix + "/"):
                continue
            rest = p[len(prefix) + 1:] if prefix else p
            parts = rest.split("/")
            for i in range(1, len(parts)):
                d = "/".join(filter(None, [prefix, *parts[:i]]))
                if d not in dirs and (recursive or i == 1):
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": git_blob_sha1(d.encode()),
                                    "size": 0, "path": d})
            if recursive or len(parts) == 1:
                entries.append(repo.entry(p))
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start:start + self.hub.page_size]
        headers = {}
        if start + self.hub.page_size < len(entries):
            q = urllib.parse.urlencode({"recursive": recursive, "expand": "False",
                                        "cursor": start + self.hub.page_size})
            base = self.hub.endpoint + urllib.parse.urlsplit(self.path).path
            headers["Link"] = f'<{base}?{q}>; rel="next"'
        self._json(page, headers)

    def _resolve(self, m: re.Match, head: bool) -> None:
        dataset, repo_id, rev, path = m.groups()
        repo = self._repo("dataset" if dataset else "model", repo_id, head)
        if repo is None or not self._revision_ok(repo, rev, head):
            return
        if repo.gated:
            token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not token:
                return self._error(401, "GatedRepo", f"Access to {repo_id} is restricted. You "
                                   "must have access to it and be authenticated.", head)
            if token not in repo.granted:
                return self._error(403, "GatedRepo", f"Access to {repo_id} is restricted and you "
                                   "are not in the authorized list.", head)
        path = urllib.parse.unquote(path)
        if path not in repo.files:
            return self._error(404, "EntryNotFound", f"{path} does not exist", head, repo.sha)
        data = repo.files[path]
        common = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if repo.is_lfs(path):
            sha256 = hashlib.sha256(data).hexdigest()
            return self._send(302, b"", {
                **common, "Location": f"{self.hub.cdn}/cdn/{sha256}",
                "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": len(data),
                "ETag": f'"{git_blob_sha1(data)}"'}, head)
        self._bytes(path, data, head, {**common, "ETag": f'"{git_blob_sha1(data)}"'})


@pytest.fixture
def hf_hub(monkeypatch):
    """An empty fake Hub on 127.0.0.1; ``HF_ENDPOINT`` points at it, no token is set and the
    client's progress bars are off."""
    hub = FakeHub()
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    port = server.server_address[1]
    hub.endpoint, hub.cdn = f"http://127.0.0.1:{port}", f"http://localhost:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setattr(hf_constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
