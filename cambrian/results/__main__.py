"""``python -m cambrian.results compare RUN... --out figs/`` (see ``cli.py``)."""

import sys

from cambrian.results.cli import main

sys.exit(main())
