"""`python -m pipelines`: the campaign-sync command line."""

import sys

from pipelines.cli import main

sys.exit(main())
