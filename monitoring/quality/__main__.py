import gc
import sys

from monitoring.quality.cli import main

code = main()
gc.freeze()  # skip the shutdown collection over Evidently's objects (see monitoring/drift/__main__.py)
sys.exit(code)
