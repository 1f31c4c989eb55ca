"""A local Google Cloud Storage server for tests: code under test opens ``gs://`` URLs through
fsspec exactly as in production, and a real gcsfs client talks HTTP to a server on 127.0.0.1.

The server is gcp-storage-emulator (pure Python, objects in memory), which speaks the GCS JSON
API: simple, multipart and resumable uploads, listing with prefix and delimiter, downloads with
byte ranges, metadata, delete, copy and rewrite. Added here where GCS does more than the emulator:
``moveTo`` (what gcsfs's ``mv`` calls first; copy + delete, instead of half a minute of gcsfs
retries), and on media downloads the ``x-goog-generation`` header and the ``ifGenerationMatch`` /
``ifGenerationNotMatch`` preconditions (412 / 304) that tensorstore (orbax's ``gs://``
checkpoints) relies on. Subprocesses reach the same server with ``STORAGE_EMULATOR_HOST``,
``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``, ``FSSPEC_GS_TOKEN=anon`` (gcsfs) and
``TENSORSTORE_GCS_HTTP_URL``, ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` (tensorstore).

    from tests.fakes.gcs import gcs  # noqa: F401  (the fixture)

    def test_reads_a_bucket(gcs, tmp_path):
        url = gcs.put_dir(local_run_folder, "runs/a")   # -> "gs://test-bucket/runs/a"
        assert my_loader(url) == ...
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import socket
from http import HTTPStatus

import fsspec
import pytest

BUCKET = "test-bucket"


@dataclasses.dataclass
class FakeGCS:
    endpoint: str  # http://127.0.0.1:<port>, also in $STORAGE_EMULATOR_HOST
    bucket: str
    fs: fsspec.AbstractFileSystem  # a gcsfs client of the server

    def url(self, path: str = "") -> str:
        return f"gs://{self.bucket}/{path}".rstrip("/")

    def put_bytes(self, path: str, data: bytes) -> str:
        self.fs.pipe(f"{self.bucket}/{path}", data)
        return self.url(path)

    def put_dir(self, local: str, prefix: str) -> str:
        """Uploads every file under ``local`` to ``gs://bucket/prefix/...``; returns that URL."""
        for root, _, files in os.walk(local):
            for f in files:
                rel = os.path.relpath(os.path.join(root, f), local).replace(os.sep, "/")
                with open(os.path.join(root, f), "rb") as fh:
                    self.put_bytes(f"{prefix}/{rel}", fh.read())
        self.fs.invalidate_cache()
        return self.url(prefix)


def _move(request, response, storage, *args, **kwargs):
    """objects.move (``.../o/SRC/moveTo/o/DST``) within a bucket: copy, then delete SRC."""
    from gcp_storage_emulator.handlers import objects

    request.params["dest_bucket_name"] = request.params["bucket_name"]
    objects.copy(request, response, storage)
    if response.status == 200:
        objects.delete(request, response, storage)


def _with_generation(handler):
    """A media download that also answers as GCS does: preconditions and the generation header."""

    def download(request, response, storage, *args, **kwargs):
        query = request.query
        if query.get("alt", [""])[0] != "media" and handler.__name__ == "get":
            return handler(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except Exception:  # not found: the emulator's own answer
            return handler(request, response, storage, *args, **kwargs)
        generation = str(obj["generation"])
        if query.get("ifGenerationNotMatch", [None])[0] == generation:
            response.status = HTTPStatus.NOT_MODIFIED
            return
        match = query.get("ifGenerationMatch", [None])[0]
        if match is not None and match != generation:
            response.status = HTTPStatus.PRECONDITION_FAILED
            return
        handler(request, response, storage, *args, **kwargs)
        response["X-Goog-Generation"] = generation
        response["X-Goog-Metageneration"] = str(obj.get("metageneration", "1"))

    return download


def _routes(emulator) -> tuple:
    """The emulator's routes with ``moveTo`` and GCS's media-download behaviour added."""
    from gcp_storage_emulator.handlers import objects

    move = (r"^/storage/v1/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/"
            r"(?P<dest_object_id>.*[^/]+)$", {"POST": _move})
    media = {objects.get: _with_generation(objects.get),
             objects.download: _with_generation(objects.download)}
    return (move, *((rx, {m: media.get(f, f) for m, f in handlers.items()})
                    for rx, handlers in emulator.HANDLERS))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gcs(monkeypatch) -> FakeGCS:
    """An empty bucket ``test-bucket`` on a fresh server; fsspec's ``gs://`` points at it."""
    gcsfs = pytest.importorskip("gcsfs")
    emulator = pytest.importorskip("gcp_storage_emulator.server")
    registry = importlib.import_module("fsspec.registry")  # the module, not fsspec.registry
    port = _free_port()
    monkeypatch.setattr(emulator, "HANDLERS", _routes(emulator))
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:  # the server thread keeps the process alive until stopped, whatever fails
        endpoint = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        # gcsfs's default client first asks the gRPC storage-control API for the bucket's
        # layout, which no emulator serves (a 60 s timeout per bucket): use its JSON-API
        # client, without looking for credentials.
        for proto in ("gs", "gcs"):
            monkeypatch.setitem(registry._registry, proto, gcsfs.core.GCSFileSystem)
            monkeypatch.setitem(fsspec.config.conf, proto, {"token": "anon"})
        gcsfs.core.GCSFileSystem.clear_instance_cache()
        yield FakeGCS(endpoint, BUCKET, fsspec.filesystem("gs"))
    finally:
        gcsfs.core.GCSFileSystem.clear_instance_cache()
        server.stop()
