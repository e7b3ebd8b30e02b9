"""The local web app of ``masksearch serve``: a JSON API and the page that uses it.

It needs the ``web`` extra (``pip install 'masksearch[web]'``: Starlette and uvicorn); the
rest of masksearch never imports this package.
"""

from __future__ import annotations

from ..errors import MaskSearchError

EXTRA = "pip install 'masksearch[web]'"


class WebUnavailable(MaskSearchError):
    """The web extra (Starlette, uvicorn) is not installed."""


def require_extra() -> None:
    """Raise ``WebUnavailable`` naming the extra when Starlette or uvicorn is missing."""
    for module in ("starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            raise WebUnavailable(f"masksearch serve needs the 'web' extra ({module} is not "
                                 f"installed): {EXTRA}") from None
