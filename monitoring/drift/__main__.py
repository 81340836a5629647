"""`python -m monitoring.drift ...`: see monitoring/drift/cli.py."""

import sys

from monitoring.drift.cli import main

sys.exit(main())
