"""Groups of rows (GROUP BY, or one group of all rows for aggregates without it) as units of
evaluation: formed from the member rows, bounded from the members' bounds, made exact from
the members' exact values and, for CP over intersect/union/mean, their aggregated pixels."""
