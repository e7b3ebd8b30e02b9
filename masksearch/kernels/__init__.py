"""Numba kernels: plain arrays in, caller-allocated arrays out, no Python orchestration."""
