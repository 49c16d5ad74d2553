"""Writing a run's files: whole or not at all (no torn line, no half file), strict JSON, modes as the user's
umask says (safetensors writes 0600, unreadable to the group sharing a runs folder), and one line naming the
path and the cause when the disk says no."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any


def umask_mode() -> int:
    """The mode a file created now gets: 0666 less the process's umask (for files others created: os.open
    and open() get it from the kernel)."""
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


class WriteError(Exception):
    """A file of the run could not be written (a full disk, a lost mount): one line naming the path and the
    cause; what was there before is as it was."""

    def __init__(self, path: str | Path, cause: BaseException | str) -> None:
        reason = cause if isinstance(cause, str) else describe_write_error(cause, Path(path))
        super().__init__(f"cannot write {str(path)!r}: {reason}")


def describe_write_error(err: BaseException, path: Path) -> str:
    """The error in one line; writers that hide the OS error (torch, safetensors) are told apart by the free
    space left where they wrote."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError):
        return err.strerror or text
    probe = path if path.exists() else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return text
    return f"No space left on device ({free} bytes free; {text[:200]})" if free < 1 << 20 else text[:300]


def strict_json(value: Any) -> tuple[Any, list[str]]:
    """`value` with every non-finite float replaced by None (JSON has no NaN or infinity: strict readers
    reject them), and the dotted keys that were replaced."""
    replaced: list[str] = []

    def clean(item: Any, key: str) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            replaced.append(key)
            return None
        if isinstance(item, dict):
            return {k: clean(v, f"{key}.{k}" if key else str(k)) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v, f"{key}[{i}]") for i, v in enumerate(item)]
        return item

    return clean(value, ""), replaced


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """json.dumps of `value` with non-finite numbers as null (always valid JSON)."""
    return json.dumps(strict_json(value)[0], allow_nan=False, **kwargs)


def write_text(path: str | Path, text: str) -> None:
    """Write a whole file or leave what was there: a temporary file beside it, renamed into place; a
    WriteError on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteError(path, err) from None


def append_line(path: str | Path, line: str) -> None:
    """Append one whole line: on failure the file is cut back to what it held (no torn line) and a WriteError
    says why."""
    data = (line.rstrip("\n") + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the kernel applies the umask
    except OSError as err:
        raise WriteError(path, err) from None
    try:
        before = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise WriteError(path, err) from None
    finally:
        os.close(fd)
