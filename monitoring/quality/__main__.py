import sys

from monitoring.quality.cli import main

sys.exit(main())
