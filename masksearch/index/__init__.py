"""The Cumulative Histogram Index: per-mask prefix sums over a spatial grid and value bins."""
