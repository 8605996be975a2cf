"""Job folders and results travel as zip archives offered by the download service."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path


def pack(folder: Path, dest: Path) -> Path:
    """Zip ``folder``'s contents into ``dest`` (``.zip``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    base = dest.with_suffix("")
    return Path(shutil.make_archive(str(base), "zip", root_dir=folder))


def unpack(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` (a fresh folder). Members that would land outside
    ``dest`` (absolute paths, ``..``) are refused."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (dest / member).resolve()
            if target != dest and dest not in target.parents:
                raise ValueError(f"{archive.name}: member {member!r} would land outside {dest}")
        dest.mkdir(parents=True, exist_ok=True)
        zf.extractall(dest)
    return dest


def temp_zip(prefix: str) -> Path:
    """A path for a temporary archive (its folder is the caller's to remove)."""
    return Path(tempfile.mkdtemp(prefix=prefix)) / "archive.zip"
