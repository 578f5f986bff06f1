"""``python -m reidlib.pipeline``: see :mod:`reidlib.pipeline.cli`."""
import logging
import sys

from .cli import main

code = main()
if code in (130, 143):  # interrupted: the process ends now; asyncio's note on the cell task it abandoned is noise
    logging.getLogger("asyncio").disabled = True
sys.exit(code)
