"""``python -m cambrian.fetch``: downloads what a config reads, or named checkpoints, training
sets and benchmarks (the library is ``cambrian/fetch.py``)::

    python -m cambrian.fetch --config encoders/dinov2.py [--config.x=y ...] [--dry-run]
    python -m cambrian.fetch --checkpoints facebook/dinov2-large,lmsys/vicuna-7b-v1.5 \\
        --data sharegpt4v_pt,cambrian_737k --benchmarks cambrian,extras [--dry-run]
    python -m cambrian.fetch --list

With ``--config`` each thing goes where the config reads it (named benchmarks too: ``--config
X --benchmarks extras`` adds the extras). Otherwise checkpoints go to
``$CAMBRIAN_CHECKPOINTS/<name>`` (default ``checkpoints/``), training data under
``$CAMBRIAN_DATA`` (default ``data/``) and benchmarks to ``$CAMBRIAN_DATA/benchmarks/<name>``;
any of them may be ``gs://``. ``--dry-run`` lists each item, its source, its size as the source
lists it and its destination, and downloads nothing. Exit status 1 if anything failed (one line
each, with the fix), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import os
import sys

from cambrian import config as config_lib
from cambrian import fetch
from cambrian.fetch_sources import CHECKPOINTS, DATA


def human(n: int | None) -> str:
    """Bytes in the Hub's decimal units."""
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return ""


def _split(text: str) -> list[str]:
    return [x for x in (text or "").split(",") if x]


def _benchmark_folder(name: str, config, data_root: str) -> str:
    """Where benchmark ``name`` goes: where ``config`` reads it, else under the data root."""
    from cambrian.eval import suite

    if config is not None and (config.eval.root or (name in config.eval.roots
                                                     and config.eval.roots[name])):
        try:
            return suite.folder(suite.benchmark(name), config)
        except ValueError:  # unknown name: benchmark_item says so
            pass
    return f"{data_root.rstrip('/')}/benchmarks/{name}"


def _items(args, p: argparse.ArgumentParser, overrides: list[str]):
    """The config's items (if ``--config``) and the named ones, each once."""
    config, items, problems = None, [], []
    if args.config:
        try:
            config = config_lib.load(args.config, overrides)
        except config_lib.ConfigError as e:
            p.error(str(e))
        items, problems = fetch.plan_config(config)
    ckpt_root = os.environ.get("CAMBRIAN_CHECKPOINTS", "checkpoints")
    data_root = os.environ.get("CAMBRIAN_DATA", "data")
    names = [n for spec in _split(args.benchmarks) for n in fetch.benchmark_names(spec)]
    named = [*((fetch.checkpoint_item, n, ckpt_root) for n in _split(args.checkpoints)),
             *((fetch.data_item, n, data_root) for n in _split(args.data)),
             *((fetch.benchmark_item, n, _benchmark_folder(n, config, data_root))
               for n in names)]
    for make, name, folder in named:
        try:
            items.append(make(name, folder))
        except fetch.FetchError as e:
            problems.append(str(e))
    unique = {(i.kind, i.name, i.folder): i for i in items}
    return list(unique.values()), problems


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    p = argparse.ArgumentParser(prog="python -m cambrian.fetch",
                                description=__doc__.split("\n")[0])
    p.add_argument("--config", default="", help="configs/ path: fetch everything it reads")
    p.add_argument("--checkpoints", default="", help="comma-separated checkpoint names")
    p.add_argument("--data", default="", help="comma-separated training sets")
    p.add_argument("--benchmarks", default="",
                   help="comma-separated benchmark or suite names (cambrian, extras, all)")
    p.add_argument("--dry-run", action="store_true",
                   help="list items, sources, sizes and destinations; download nothing")
    p.add_argument("--list", action="store_true", help="list the known names and exit")
    p.add_argument("--skip-bad", action="store_true",
                   help="recipe builds skip and count bad records instead of stopping")
    p.add_argument("--workers", type=int, default=8, help="parallel file downloads per repo")
    args = p.parse_args([a for a in argv if not a.startswith("--config.")])
    if args.list:
        print("checkpoints:", ", ".join(sorted(CHECKPOINTS)))
        print("data:", ", ".join(f"{k} ({d.about})" for k, d in sorted(DATA.items())))
        print("benchmarks:", ", ".join(fetch.benchmark_names("all")))
        return 0
    if not (args.config or args.checkpoints or args.data or args.benchmarks):
        p.error("name what to fetch: --config FILE, or --checkpoints/--data/--benchmarks NAMES")
    items, problems = _items(args, p, overrides)

    plans = []
    for item in items:
        try:
            plans.append((item, fetch.survey(item)))
        except fetch.FetchError as e:
            problems.append(f"{item.kind} {item.name}: {e}")
    todo = 0
    for item, surveys in plans:
        size = sum(s.size for s in surveys)
        left = sum(s.size for s in surveys if not s.present)
        todo += left
        state = "present" if not left and all(s.present for s in surveys) else (
            f"to fetch {human(left)}")
        print(f"{item.kind:<10} {item.name:<34} {human(size):>10}  -> {item.reads or item.folder}"
              f"  [{state}]")
        for s in surveys:
            where = f"{item.folder.rstrip('/')}/{s.part.into}" if s.part.into else item.folder
            note = f"; {s.note}" if s.note else ""
            print(f"{'':<11}{fetch.describe(s.part, s)}  {human(s.size)} -> {where}{note}")
    print(f"{len(plans)} items, {human(todo)} to download")
    if not args.dry_run:
        for item, surveys in plans:
            try:
                fetch.fetch(item, surveys, workers=args.workers, skip_bad=args.skip_bad)
                print(f"done: {item.kind} {item.name} -> {item.reads or item.folder}")
            except fetch.FetchError as e:
                problems.append(f"{item.kind} {item.name}: {e}")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
