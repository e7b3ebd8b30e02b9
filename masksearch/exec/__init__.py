"""Execution: filter-verification over the store and the index."""
