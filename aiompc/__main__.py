"""``python -m aiompc`` runs the ``aiompc`` command (the same entry point as the installed script)."""

import sys

from aiompc.cli import main

sys.exit(main())
