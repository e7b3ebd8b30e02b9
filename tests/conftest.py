import os

# Kernels index raw arrays; in tests an out-of-bounds index raises instead of corrupting memory.
# Bounds-checked builds get their own cache: Numba's cache does not key on this setting.
os.environ.setdefault("NUMBA_BOUNDSCHECK", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..",
                                                      ".numba-cache-boundscheck"))

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.function_scoped_fixture])
settings.register_profile(
    "ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

from .dask_cluster import client  # noqa: E402, F401  (an in-process Dask cluster)
from .s3_server import moto_server, s3_server  # noqa: E402, F401  (the S3 servers)
