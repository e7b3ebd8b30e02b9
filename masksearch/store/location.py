"""Where a database is: a local folder (a path), or a prefix on S3-compatible object storage
(an ``s3://bucket/prefix`` URL with pyarrow's S3 file system options). A ``Location`` is
small and picklable, so a cluster's workers can open the same database."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
SCHEMES = ("s3",)
# The endpoint of S3-compatible storage, as AWS's own tools read it from the environment
# (pyarrow's S3FileSystem() does not).
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class Location:
    """A database on object storage: ``url`` (``s3://bucket/prefix``, no trailing slash)
    and the options of ``pyarrow.fs.S3FileSystem`` (``endpoint_override``, ``scheme``,
    ``access_key``, ``secret_key``, ``region``...; none: the usual AWS environment)."""

    url: str
    options: tuple[tuple[str, Any], ...] = ()

    def __repr__(self) -> str:   # options hold secrets: never shown
        return f"Location({self.url!r}, {len(self.options)} storage options)"

    def __str__(self) -> str:
        return self.url

    def __hash__(self) -> int:   # option values may be dicts (proxy_options)
        return hash((self.url, repr(self.options)))

    @property
    def base(self) -> str:
        """``bucket/prefix``: the path of the database in the file system."""
        return self.url.split("://", 1)[1]

    def filesystem(self) -> pafs.FileSystem:
        """A pyarrow file system for this location; bad options are a ``StoreError``."""
        import pyarrow.fs as pafs

        options = dict(self.options)
        endpoint = next((os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)), None)
        if "endpoint_override" not in options and endpoint:
            options["endpoint_override"] = endpoint
        # Small files (a copy writes many) are uploaded in one request, not three.
        options.setdefault("allow_delayed_open", True)
        try:
            return pafs.S3FileSystem(**options)
        except TypeError as e:
            raise StoreError(f"{self.url}: storage_options: {e} (they are the keyword "
                             "arguments of pyarrow.fs.S3FileSystem, e.g. endpoint_override, "
                             "scheme, access_key, secret_key, region)") from None
        except (ValueError, OSError) as e:
            raise StoreError(f"{self.url}: storage_options: {e}") from None


def is_url(where: object) -> bool:
    """Whether ``where`` is a URL (``scheme://...``) rather than a local path."""
    return isinstance(where, str) and _URL.match(where) is not None


def location_of(where: str | os.PathLike[str] | Location,
                storage_options: dict[str, Any] | None = None) -> Path | Location:
    """The local folder or the object storage location ``where`` names. Storage options go
    with URLs only; a URL of a scheme masksearch cannot read is refused."""
    if isinstance(where, Location):
        if storage_options is not None:
            raise StoreError(f"{where.url}: its storage options are given already")
        return where
    if not is_url(where):
        if storage_options is not None:
            raise StoreError(f"storage_options are for databases on object storage "
                             f"(s3://bucket/prefix); {os.fspath(where)} is a local path")
        return Path(where)
    assert isinstance(where, str)   # a URL
    scheme, rest = _URL.match(where).groups()  # type: ignore[union-attr]
    if scheme.lower() not in SCHEMES:
        raise StoreError(f"{where}: masksearch reads databases on S3-compatible object "
                         f"storage (s3://bucket/prefix), not {scheme}://")
    rest = rest.strip("/")
    if not rest or rest.startswith("/"):
        raise StoreError(f"{where}: an object storage URL names a bucket (s3://bucket/prefix)")
    options = storage_options or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise StoreError(f"{where}: storage_options must be a dict of pyarrow.fs.S3FileSystem "
                         "options, e.g. {'endpoint_override': 'localhost:9000'}")
    return Location(f"s3://{rest}", tuple(sorted(options.items())))
