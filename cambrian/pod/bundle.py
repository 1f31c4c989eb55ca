"""The code that goes to the workers: a tarball of git HEAD plus uncommitted changes.

Files are those git would commit now (tracked, plus untracked files that are not ignored), as
they are in the working tree, so an edit made a minute ago runs on the pod without a commit.
Outside a git checkout the package folders are packed instead. The bundle is named by the hash
of its contents, the install by the hash of ``pyproject.toml``: workers re-extract only new
code and reinstall only new dependencies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Outside git: what a run needs
_PACKAGE_DIRS = ("cambrian", "configs", "launch", "data_recipes", "benchmarks")
_PACKAGE_FILES = ("pyproject.toml", "README.md")


@dataclasses.dataclass(frozen=True)
class Bundle:
    path: str  # the .tar.gz on this machine
    code_hash: str  # of every packed file's path and bytes
    install_hash: str  # of pyproject.toml
    source: str  # "git <commit> (+N uncommitted)" or "files"


def _git(*args: str, root: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


def files(root: str = ROOT) -> tuple[list[str], str]:
    """(relative paths to pack, where they come from)."""
    try:
        listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", root=root)
        commit = _git("rev-parse", "--short", "HEAD", root=root).strip()
        dirty = [ln for ln in _git("status", "--porcelain", root=root).splitlines() if ln]
    except (OSError, subprocess.CalledProcessError):
        out = [f for f in _PACKAGE_FILES if os.path.isfile(os.path.join(root, f))]
        for d in _PACKAGE_DIRS:
            for base, dirs, names in os.walk(os.path.join(root, d)):
                dirs[:] = [x for x in dirs if x != "__pycache__"]
                out += [os.path.relpath(os.path.join(base, n), root) for n in names
                        if not n.endswith(".pyc")]
        return sorted(out), "files"
    # a tracked file deleted in the working tree is not packed
    paths = sorted(p for p in listed.split("\0") if p and os.path.isfile(os.path.join(root, p)))
    return paths, f"git {commit}" + (f" (+{len(dirty)} uncommitted)" if dirty else "")


def make(out_dir: str, root: str = ROOT) -> Bundle:
    """Packs the code into ``out_dir/cambrian-<hash>.tar.gz`` (deterministic: sorted, no mtimes)."""
    paths, source = files(root)
    h = hashlib.sha256()
    for p in paths:
        with open(os.path.join(root, p), "rb") as fh:
            data = fh.read()
        h.update(p.encode() + b"\0" + hashlib.sha256(data).digest())
    code_hash = h.hexdigest()[:12]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"cambrian-{code_hash}.tar.gz")
    if not os.path.exists(path):
        with tarfile.open(path + ".tmp", "w:gz") as tar:
            for p in paths:
                info = tar.gettarinfo(os.path.join(root, p), arcname=p)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(os.path.join(root, p), "rb") as fh:
                    tar.addfile(info, fh)
            meta = json.dumps({"source": source, "code_hash": code_hash}).encode()
            info = tarfile.TarInfo("BUNDLE.json")
            info.size = len(meta)
            tar.addfile(info, io.BytesIO(meta))
        os.replace(path + ".tmp", path)
    return Bundle(path, code_hash, install_hash(root), source)


def install_hash(root: str = ROOT) -> str:
    with open(os.path.join(root, "pyproject.toml"), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:12]
