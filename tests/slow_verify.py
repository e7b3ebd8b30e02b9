"""Run the masksearch CLI with verification slowed down (5 ms per mask), so a test has time
to press Ctrl-C while a query runs. Test-only: the product has no such switch."""

import sys

from slowdown import slowed_counts  # this script's folder is on sys.path

import masksearch.exec.verify as verify
from masksearch.cli import main

for name, fn in slowed_counts(0.005).items():
    setattr(verify, name, fn)
sys.exit(main())
