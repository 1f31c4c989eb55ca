"""Resumable HTTP downloads: a file is written to a partial file that a later call continues
with an HTTP ``Range`` request, checked against its size and digest, then moved into place."""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import urllib.error
import urllib.request

from tqdm import tqdm


class DownloadError(OSError):
    """A download did not complete; the message is one line and says to rerun."""


def digest_ok(path: str, digest: str | None) -> bool:
    """Whether ``path`` has ``digest`` (``sha256:<hex>`` or a git blob id ``blob:<hex>``)."""
    if not digest:
        return True
    kind, _, want = digest.partition(":")
    h = hashlib.sha256() if kind == "sha256" else hashlib.sha1(
        b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest() == want


def get(url: str, path: str, size: int | None, *, partial: str, digest: str | None = None,
        headers: dict | None = None, tries: int = 3) -> None:
    """``url`` to ``path`` through a file in ``partial`` that a rerun resumes (HTTP Range)."""
    os.makedirs(partial, exist_ok=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    key = hashlib.sha1(f"{url.split('?')[0]} {size} {digest}".encode()).hexdigest()[:20]
    tmp = os.path.join(partial, f"{key}.incomplete")
    name = posixpath.basename(path)
    error = ""
    for _ in range(tries):
        have = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        if size is not None and have >= size:
            break
        req = urllib.request.Request(url, headers={**(headers or {}), **(
            {"Range": f"bytes={have}-"} if have else {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                if have and r.status != 206:  # the server ignored the range: start over
                    have = 0
                with open(tmp, "ab" if have else "wb") as out, tqdm(
                        total=size, initial=have, unit="B", unit_scale=True, desc=name,
                        disable=(size or 0) < (1 << 26)) as bar:
                    for block in iter(lambda: r.read(1 << 20), b""):  # noqa: B023
                        out.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            error = f"{e}; "
            continue
        if size is None:
            break
        error = "the connection closed early; "  # a short body: resume from what arrived
    got = os.path.getsize(tmp) if os.path.exists(tmp) else 0
    if size is not None and got != size:
        raise DownloadError(f"{url}: {error}got {got} of {size} bytes of {name}; rerun to "
                            "resume")
    if not digest_ok(tmp, digest):
        os.remove(tmp)
        raise DownloadError(f"{url}: {name} does not match the {digest.split(':')[0]} its source "
                            "lists (corrupted in transit); rerun to download it again")
    os.replace(tmp, path)
