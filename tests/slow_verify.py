"""Run the masksearch CLI with verification slowed down (5 ms per mask), so a test has time
to press Ctrl-C while a query runs. Test-only: the product has no such switch."""

import sys
import time

import masksearch.exec.verify as verify
from masksearch.cli import main

_count = verify.count_in_range


def _slow_count(*args):
    time.sleep(0.005)
    return _count(*args)


verify.count_in_range = _slow_count
sys.exit(main())
