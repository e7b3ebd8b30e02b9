"""Run the masksearch CLI with verification slowed down (5 ms per mask), so a test has time
to press Ctrl-C while a query runs. Test-only: the product has no such switch."""

import sys
import time

import masksearch.exec.verify as verify
from masksearch.cli import main

_count, _tiled = verify.count_in_range, verify.count_tiled


def _slow_count(*args):
    time.sleep(0.005)
    return _count(*args)


def _slow_tiled(*args):           # masks stored in tiles: a segment's at a time
    time.sleep(0.005 * len(args[1]) * len(args[3]))   # masks x terms
    return _tiled(*args)


verify.count_in_range = _slow_count
verify.count_tiled = _slow_tiled
sys.exit(main())
