"""The on-disk store: a directory of immutable segments named by an atomically swapped manifest."""
