"""``python -m reidlib.pipeline``: see :mod:`reidlib.pipeline.cli`."""
import sys

from .cli import main

sys.exit(main())
