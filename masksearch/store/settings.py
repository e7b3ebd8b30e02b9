"""The database's settings file (``settings.json``): user settings that are not part of the
data, such as the folder source images are read from. Sealed (it carries its checksum) and
replaced atomically; a database without one has every setting at its default."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StoreError
from .checksum import write_sealed_json
from .files import Files, as_files

SETTINGS = "settings.json"
KNOWN = {"image_root": (str, type(None))}


def read_settings(root: Path | Files) -> dict[str, object]:
    """The settings of the database at ``root`` (a local folder or its ``Files``; {}
    without a settings file)."""
    files = as_files(root)
    if not files.exists(SETTINGS):
        return {}
    body = files.read_sealed_json(SETTINGS, "settings")
    return {name: value for name, value in body.items() if name in KNOWN}


def write_setting(root: Path, name: str, value: object) -> None:
    """Set one setting and replace the settings file atomically (``None`` clears it)."""
    if name not in KNOWN or not isinstance(value, KNOWN[name]):
        raise StoreError(f"unknown setting {name!r} or a value of the wrong type")
    body = read_settings(root)
    if value is None:
        body.pop(name, None)
    else:
        body[name] = value
    write_sealed_json(root / SETTINGS, body)


def image_root_value(root: Path, folder: str | os.PathLike[str] | None) -> str | None:
    """What ``db.image_root = folder`` stores: the folder as an absolute path (relative ones
    are taken from the current directory), checked to be a folder; None clears it."""
    if folder is None:
        return None
    text = os.fspath(folder)
    if not text or "\x00" in text:
        raise StoreError(f"image root {text!r} is not a folder")
    path = os.path.abspath(text)
    if not os.path.isdir(path):
        raise StoreError(f"image root {path} is not a folder")
    return path
