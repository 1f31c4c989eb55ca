"""Downloads what a run reads -- checkpoints, training data, benchmarks -- in the layouts the
loaders read, to local folders or ``gs://`` (the CLI is ``cambrian/fetch_cli.py``)::

    python -m cambrian.fetch --config encoders/dinov2.py [--config.x=y ...] [--dry-run]
    python -m cambrian.fetch --checkpoints facebook/dinov2-large --benchmarks cambrian

``plan_config(config)`` turns a resolved config into ``Item`` s (each checkpoint, training set and
benchmark it reads, at the paths it reads them from); ``checkpoint_item`` / ``data_item`` /
``benchmark_item`` make single ones. ``survey(item)`` asks each source what it holds (files,
sizes, the commit they come from); ``fetch(item, surveys)`` downloads.

Hub repos are listed and resolved with ``huggingface_hub`` (``HF_ENDPOINT``, ``HF_TOKEN`` and its
errors as usual); each file is downloaded into ``<folder>/.fetch/partial/`` and resumed from there
with an HTTP Range request after an interruption (``downloads.py``; the client itself starts a
failed file over), checked against the sha256 (LFS) or git blob id the Hub lists, and moved into
place. Archives are unpacked (``archives.py``) and deleted, and a finished part
leaves a marker (``<folder>/.fetch/<part>.json``) so a rerun skips it. A ``gs://`` destination is
filled through a local staging folder (``$CAMBRIAN_CACHE/fetch/``) and uploaded with gcsfs,
skipping files already there. A gated or missing repo is one line with the fix.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fnmatch
import hashlib
import json
import os
import posixpath
import shutil
import urllib.error
import urllib.parse
import urllib.request

import fsspec
from tqdm import tqdm

from cambrian import archives, downloads, fileio
from cambrian.fetch_sources import CHECKPOINTS, DATA, Build, Http, Hub, Part

RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "data_recipes")
_PICKLED = ("*.bin", "*.pth", "*.pt", "pytorch_model.bin.index.json")


class FetchError(RuntimeError):
    """One thing could not be fetched; the message is one line with the fix."""


@dataclasses.dataclass(frozen=True)
class Item:
    """Something a run reads: its parts land in ``folder`` (local or ``gs://``); ``reads`` is
    the path the config reads (shown to the user)."""

    kind: str  # checkpoint | data | benchmark
    name: str
    folder: str
    parts: tuple[Part, ...]
    reads: str = ""
    build: Build | None = None


@dataclasses.dataclass
class Survey:
    """What a part's source holds: the files to take, their sizes, the revision they are at."""

    part: Part
    files: list[tuple[str, int | None]]
    digests: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> sha256:/blob:
    revision: str = ""
    present: bool = False
    note: str = ""

    @property
    def size(self) -> int:
        return sum(s or 0 for _, s in self.files)


# ------------------------------------------------------------------------------- planning


def checkpoint_item(name: str, root: str, reads: str = "") -> Item:
    """The checkpoint called ``name`` (a key of ``CHECKPOINTS``) at ``root/name``."""
    if name not in CHECKPOINTS:
        raise FetchError(f"no source known for checkpoint {name!r}; known: "
                         f"{', '.join(sorted(CHECKPOINTS))} (cambrian/fetch_sources.py)")
    src = CHECKPOINTS[name]
    path = reads or fileio.join(root, name)
    folder = path.rsplit("/", 1)[0] if isinstance(src, Http) else path
    return Item("checkpoint", name, folder, (Part(src),), reads=path)


def data_item(name: str, root: str) -> Item:
    """The training set ``name`` (a key of ``DATA``) under the data root ``root``."""
    if name not in DATA:
        raise FetchError(f"no source known for training data {name!r}; known: "
                         f"{', '.join(sorted(DATA))} (cambrian/fetch_sources.py)")
    d = DATA[name]
    return Item("data", name, fileio.join(root, d.folder) if d.folder else root, d.parts,
                reads=", ".join(fileio.join(root, p) for p in d.provides[:1]), build=d.build)


def benchmark_item(name: str, folder: str) -> Item:
    """Benchmark ``name`` into ``folder``: the files of its module's ``SOURCE``."""
    from cambrian.eval import suite

    try:
        bench = suite.benchmark(name)
    except ValueError as e:
        raise FetchError(str(e)) from None
    if name not in suite.DOWNLOADED:
        raise FetchError(f"benchmark {name!r} is generated, not downloaded")
    src = bench.SOURCE
    return Item("benchmark", name, folder, (Part(Hub(src.repo, src.files, "dataset")),),
                reads=folder)


def benchmark_names(spec: str) -> list[str]:
    """``"cambrian"``, ``"extras"``, ``"all"`` or comma-separated benchmark names."""
    from cambrian.eval import suite

    if spec == "all":
        return list(suite.DOWNLOADED)
    return list(suite.SUITES.get(spec) or filter(None, spec.split(",")))


def _by_suffix(path: str, names) -> str | None:
    path = path.rstrip("/")
    return next((n for n in names if path == n or path.endswith("/" + n)), None)


def plan_config(config) -> tuple[list[Item], list[str]]:
    """Every checkpoint, training set and benchmark ``config`` reads, as items at the paths it
    reads them from, and one line per path whose source is not known."""
    from cambrian.eval import suite

    items: list[Item] = []
    problems: list[str] = []

    def checkpoint(field: str, path: str) -> None:
        name = _by_suffix(path, CHECKPOINTS)
        if name is None:
            problems.append(f"{field}: no source known for {path}; put the checkpoint there "
                            "yourself or use one of the names in cambrian/fetch_sources.py")
        else:
            items.append(checkpoint_item(name, "", reads=path.rstrip("/")))

    for alias, e in config.model.encoders.items():
        if e.init == "pretrained":
            checkpoint(f"model.encoders.{alias}.checkpoint", e.checkpoint)
    if config.model.llm.init == "pretrained":
        checkpoint("model.llm.checkpoint", config.model.llm.checkpoint)
    tok = config.model.tokenizer
    if tok and tok != "synthetic" and tok.rstrip("/") != config.model.llm.checkpoint.rstrip("/"):
        checkpoint("model.tokenizer", tok)
    for name, st in config.stages.items():
        if st.steps <= 0 or st.data.startswith("synthetic:"):
            continue
        found = None
        for key, d in DATA.items():
            p = _by_suffix(st.data, d.provides)
            if p is not None:
                found = data_item(key, st.data.rstrip("/")[:-len(p)].rstrip("/"))
        if found is None:
            problems.append(f"stages.{name}.data: no source known for {st.data}; build or copy "
                            "it there yourself (known training sets: "
                            f"{', '.join(sorted(DATA))}, cambrian/fetch_sources.py)")
        else:
            items.append(found)
    for bench in suite.get(config.eval.suite):
        if bench.NAME in suite.DOWNLOADED:
            items.append(benchmark_item(bench.NAME, suite.folder(bench, config)))
    unique = {(i.kind, i.name, i.folder): i for i in items}
    return list(unique.values()), problems


# -------------------------------------------------------------------------------- surveys


def _hub_error(src: Hub, e: Exception) -> FetchError:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, GatedRepoError):
        return FetchError(
            f"{src.repo}: gated on the Hub; accept its licence at {src.url} (logged in), then set "
            "HF_TOKEN to a read token of that account (https://huggingface.co/settings/tokens) "
            "and rerun")
    if isinstance(e, RepositoryNotFoundError):
        return FetchError(
            f"{src.repo}: {src.repo_type} repo not found on the Hub ({src.url}); check the name "
            "in cambrian/fetch_sources.py, or if it is private set HF_TOKEN and rerun")
    if isinstance(e, RevisionNotFoundError):
        return FetchError(f"{src.repo}: revision {src.revision!r} not found ({src.url})")
    if isinstance(e, EntryNotFoundError):
        return FetchError(f"{src.repo}: a listed file is gone from the repo ({e}); rerun")
    return FetchError(f"{src.repo}: {type(e).__name__}: {str(e).splitlines()[0]} (rerun to "
                      "resume; check the network or HF_ENDPOINT)")


def _select(paths: list[str], src: Hub) -> list[str]:
    chosen = [p for p in paths if any(fnmatch.fnmatch(p, pat) for pat in src.files)
              and not any(fnmatch.fnmatch(p, pat) for pat in src.ignore)]
    with_st = {posixpath.dirname(p) for p in chosen if p.endswith(".safetensors")}
    return [p for p in chosen if not (posixpath.dirname(p) in with_st and any(
        fnmatch.fnmatch(posixpath.basename(p), pat) for pat in _PICKLED))]


def _survey_hub(src: Hub) -> Survey:
    from huggingface_hub import HfApi, RepoFile
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        info = api.repo_info(src.repo, repo_type=src.repo_type, revision=src.revision)
        tree = [f for f in api.list_repo_tree(src.repo, repo_type=src.repo_type,
                                              revision=info.sha, recursive=True)
                if isinstance(f, RepoFile)]
    except (HfHubHTTPError, OSError) as e:
        raise _hub_error(src, e) from None
    sizes = {f.path: f.size for f in tree}
    digests = {f.path: f"sha256:{f.lfs.sha256}" if f.lfs is not None else f"blob:{f.blob_id}"
               for f in tree}
    chosen = _select(sorted(sizes), src)
    if not chosen:
        raise FetchError(f"{src.repo}: no file matches {list(src.files)} ({src.url}); the repo's "
                         "layout changed: update cambrian/fetch_sources.py")
    note = ""
    if getattr(info, "gated", False):
        try:  # listing a gated repo is public; reading a file tells whether access was granted
            from huggingface_hub import get_hf_file_metadata, hf_hub_url

            get_hf_file_metadata(hf_hub_url(src.repo, chosen[0], repo_type=src.repo_type,
                                            revision=info.sha))
            note = "gated: access granted"
        except HfHubHTTPError as e:
            raise _hub_error(src, e) from None
    return Survey(Part(src), [(p, sizes[p]) for p in chosen], {p: digests[p] for p in chosen},
                  info.sha, note=note)


def _survey_http(src: Http) -> list[tuple[str, int | None]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(src.url, method="HEAD"),
                                    timeout=60) as r:
            size = r.headers.get("Content-Length")
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{src.url}: {e} (check the URL and the network)") from None
    return [(posixpath.basename(src.url), int(size) if size else None)]


def _marker(item: Item, part: Part) -> str:
    key = hashlib.sha1(json.dumps([repr(part.source), part.into]).encode()).hexdigest()[:16]
    return fileio.join(item.folder, ".fetch", key + ".json")


def _present(item: Item, part: Part, files: list[tuple[str, int | None]]) -> bool:
    if fileio.exists(_marker(item, part)):
        return True
    if part.unpack:
        return False
    fs, base = fsspec.core.url_to_fs(fileio.join(item.folder, part.into) if part.into
                                     else item.folder)
    for path, size in files:
        p = posixpath.join(base, path)
        if not fs.exists(p) or (size is not None and fs.size(p) != size):
            return False
    return True


def survey(item: Item) -> list[Survey]:
    """What each part of ``item`` takes from its source; raises ``FetchError`` (one line)."""
    out = []
    for part in item.parts:
        if isinstance(part.source, Hub):
            s = _survey_hub(part.source)
        else:
            s = Survey(part, _survey_http(part.source))
        s.part, s.present = part, _present(item, part, s.files)
        out.append(s)
    return out


def describe(part: Part, s: Survey) -> str:
    src = part.source
    if isinstance(src, Http):
        return src.url
    what = s.files[0][0] if len(s.files) == 1 else f"{len(s.files)} files"
    rev = f"@{s.revision[:8]}" if s.revision else ""
    return f"hf:{src.repo}{rev} ({what}{', unpacked' if part.unpack else ''})"


# -------------------------------------------------------------------------------- fetching


def staging_folder(item: Item, cache_dir: str | None = None) -> str:
    """Where a ``gs://`` item is assembled before upload."""
    key = hashlib.sha1(item.folder.encode()).hexdigest()[:16]
    return os.path.join(fileio.cache_root(cache_dir), "fetch", key)


def fetch(item: Item, surveys: list[Survey], *, cache_dir: str | None = None,
          workers: int = 8, skip_bad: bool = False) -> None:
    """Downloads every part of ``item`` not yet present, builds its recipe, uploads to a remote
    folder. Raises ``FetchError`` (one line)."""
    remote = fileio.is_remote(item.folder)
    local = staging_folder(item, cache_dir) if remote else item.folder
    for part, s in zip(item.parts, surveys):
        if s.present:
            continue
        target = os.path.join(local, part.into)
        downloads = os.path.join(local, ".fetch", "downloads") if part.unpack else target
        got = _download(part.source, s, downloads, os.path.join(local, ".fetch", "partial"),
                        workers)
        if part.unpack:
            _unpack(got, target, part)
            shutil.rmtree(downloads, ignore_errors=True)
        if remote:
            _upload(target, fileio.join(item.folder, part.into) if part.into else item.folder,
                    None if part.unpack else [p for p, _ in s.files])
        fileio.write_text(_marker(item, part), json.dumps(
            {"source": repr(part.source), "revision": s.revision, "files": s.files}))
    if item.build is not None:
        _build(item, local, remote, skip_bad)
    if remote:
        shutil.rmtree(local, ignore_errors=True)


def _download(src: Hub | Http, s: Survey, folder: str, partial: str, workers: int
              ) -> list[str]:
    """The survey's files into ``folder`` (partial files in ``partial``); their paths."""
    os.makedirs(folder, exist_ok=True)
    if isinstance(src, Http):
        path = os.path.join(folder, s.files[0][0])
        _get(src.url, path, s.files[0][1], partial=partial)
        return [path]
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    auth = build_hf_headers()

    def one(item: tuple[str, int | None]) -> str:
        path, size = item
        dest = os.path.join(folder, *path.split("/"))
        if os.path.exists(dest) and (size is None or os.path.getsize(dest) == size):
            return dest  # files are moved into place only once complete and checked
        url = hf_hub_url(src.repo, path, repo_type=src.repo_type, revision=s.revision)
        try:
            meta = get_hf_file_metadata(url)  # follows the Hub's redirects, maps its errors
        except Exception as e:  # HfHubHTTPError, OSError, the client's connection errors
            raise _hub_error(src, e) from None
        same_host = urllib.parse.urlsplit(meta.location).netloc == urllib.parse.urlsplit(
            url).netloc
        _get(meta.location, dest, size, partial=partial, digest=s.digests.get(path),
             headers=auth if same_host else {})  # a token never goes to a CDN
        return dest

    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, s.files))


def _get(url: str, path: str, size: int | None, **kw) -> None:
    try:
        downloads.get(url, path, size, **kw)
    except downloads.DownloadError as e:
        raise FetchError(str(e)) from None


def _unpack(paths: list[str], target: str, part: Part) -> None:
    try:
        tops = archives.unpack(paths, target)
    except archives.ArchiveError as e:
        raise FetchError(str(e)) from None
    missing = [e for e in part.expect if not os.path.exists(os.path.join(target, e))]
    if missing:
        raise FetchError(f"{part.source.url}: unpacked into {target} but {', '.join(missing)} "
                         f"is not there (the archives hold {', '.join(sorted(tops)) or 'nothing'})"
                         "; the layout changed: update cambrian/fetch_sources.py")


# ------------------------------------------------------------------------------ build, upload


def _build(item: Item, local: str, remote: bool, skip_bad: bool) -> None:
    from cambrian.data.build import build
    from cambrian.data.readers import DataError
    from cambrian.data.recipe import RecipeError, load_recipe

    b = item.build
    dest = fileio.join(item.folder, b.out)
    if fileio.exists(fileio.join(dest, "manifest.json")):
        return
    spec = f"{os.path.join(RECIPES_DIR, b.recipe)}:{b.arg.format(root=local)}"
    out = os.path.join(local, b.out)
    try:
        build(load_recipe(spec), out, skip_bad=skip_bad, progress=True)
    except (DataError, RecipeError) as e:
        raise FetchError(f"building {b.recipe} into {out}: {e} (or rerun with --skip-bad to "
                         "skip and count bad records)") from None
    if remote:
        _upload(out, dest, None)


def _upload(local: str, remote: str, only: list[str] | None) -> None:
    """Files under ``local`` (or the relative paths ``only``) to ``remote``; files already there
    with the same size are skipped, so an interrupted upload resumes."""
    fs, base = fsspec.core.url_to_fs(remote)
    if only is None:
        only = []
        for root, dirs, files in os.walk(local):
            dirs[:] = [d for d in dirs if d not in (".cache", ".fetch")]
            only += [os.path.relpath(os.path.join(root, f), local).replace(os.sep, "/")
                     for f in files]
    total = sum(os.path.getsize(os.path.join(local, p)) for p in only)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"upload {remote}") as bar:
        for rel in sorted(only):
            src, dst = os.path.join(local, *rel.split("/")), posixpath.join(base, rel)
            size = os.path.getsize(src)
            if not (fs.exists(dst) and fs.size(dst) == size):
                fs.put_file(src, dst)
            bar.update(size)


if __name__ == "__main__":
    import sys

    from cambrian.fetch_cli import main

    sys.exit(main())
