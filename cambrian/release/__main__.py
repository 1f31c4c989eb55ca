"""``python -m cambrian.release``: see ``cambrian/release/cli.py``."""

import sys

from cambrian.release.cli import main

sys.exit(main())
