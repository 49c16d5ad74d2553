"""What the run writes, readable as the user's umask says: safetensors (and other writers that go through a
private temporary file) create files 0600, unreadable to the group that shares a runs folder."""

from __future__ import annotations

import os
from pathlib import Path


def umask_mode() -> int:
    """The mode a file created now gets: 0666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def share(*paths: str | Path) -> None:
    """Give each existing file (each file under a folder) the umask's mode, as `open()` would have."""
    mode = umask_mode()
    for path in map(Path, paths):
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        for file in files:
            if file.is_file() and (file.stat().st_mode & 0o777) != mode:
                os.chmod(file, mode)
