r"""Builds a data recipe into a TFDS dataset plus manifest, summary table and composition figure.

    python data_recipes/build.py --recipe data_recipes/cambrian_7m.py:root=/data/Cambrian-10M \
        --out /data/built/cambrian_7m [--dry-run] [--skip-bad] [--workers 16]

--dry-run   check every record and print the counts; write nothing
--skip-bad  skip unusable records (counted by reason in manifest.json, listed in
            OUT/bad_records.jsonl) instead of stopping at the first one
A rerun with the same recipe and --out resumes: finished shards are kept.
"""

from __future__ import annotations

import argparse
import os
import sys

from cambrian.data.build import build
from cambrian.data.manifest import summary_table
from cambrian.data.readers import DataError
from cambrian.data.recipe import RecipeError, load_recipe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", required=True, help="path/to/recipe.py[:arg]")
    p.add_argument("--out", help="output directory (local); not needed with --dry-run")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--workers", type=int, default=1, help="processes for image checks and shards")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if not args.dry_run and not args.out:
        p.error("--out is required unless --dry-run")
    try:
        recipe = load_recipe(args.recipe)
        print(f"recipe {recipe.name} ({len(recipe.sources)} sources, hash {recipe.hash()[:12]})")
        if args.out and os.path.exists(os.path.join(args.out, ".build", "plan.json")):
            print(f"resuming the build in {args.out}: finished shards are kept")
        m = build(recipe, args.out, dry_run=args.dry_run, skip_bad=args.skip_bad,
                  workers=args.workers, progress=not args.no_progress)
    except (DataError, RecipeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_table(m), end="")
    if args.dry_run:
        print(f"dry run: {m['output']['examples']} examples would be written")
    else:
        print(f"wrote {m['output']['examples']} examples in {len(m['output']['shards'])} shards "
              f"to {m['output']['dir']}; manifest: {os.path.join(args.out, 'manifest.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
