"""``python -m reidlib.train``: train a model from the command line (see :mod:`reidlib.engine.launch`)."""
from __future__ import annotations

import sys

from reidlib.engine.launch import main

if __name__ == "__main__":
    sys.exit(main())
