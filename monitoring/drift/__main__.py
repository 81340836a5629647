"""`python -m monitoring.drift ...`: see monitoring/drift/cli.py."""

import gc
import sys

from monitoring.drift.cli import main

code = main()
# Python's collection at shutdown walks every object Evidently's import made: 0.7 s of a 1M-row run, for a process
# that is about to end. Frozen objects are left to the operating system.
gc.freeze()
sys.exit(code)
