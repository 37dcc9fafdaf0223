"""Crash-safe writes: the package's one way to put a file or a folder on disk.

A reader's checkpoint, tokenizer or saved page must never be left half-written.
Every writer in `lmbook` goes through `atomic_write` (one file) or
`atomic_folder` (a folder whose files change together). Both write under a
temporary name in the destination's folder, ``fsync`` the data, and then rename
it into place with ``os.replace``, which POSIX makes atomic; the folder is
``fsync``-ed too, so the rename itself survives a power cut. Files get the mode
``open()`` would give them (0o666 less the umask), not ``mkstemp``'s private 0o600.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_folder", "check_path"]


def check_path(path: object, name: str = "path") -> Path:
    """`path` as a Path, or a TypeError naming `name` when it is not path-like."""
    if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(os.fspath(path))


def _umask_mode(base: int) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames inside folder `path` durable (a no-op where not supported)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[str], None] | str | bytes,
    name: str = "path",
) -> Path:
    """Write one file all at once: the old version or the new one, never a mix.

    `write` is the new content (``str``, written as UTF-8, or ``bytes``) or a
    function ``write(tmp)`` that writes the file at the temporary path ``tmp``
    (for example ``lambda tmp: save_file(tensors, tmp)``). Returns the Path.
    A folder at `path`, or a file where its parent should be, is a ValueError.
    """
    path = check_path(path, name)
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; expected a file path")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(
            f"{name} {str(path)!r} cannot be written: {str(parent)!r} is a file, "
            "not a folder"
        )
    if not parent.exists():
        raise ValueError(f"{name} {str(path)!r} cannot be written: no folder {parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        if callable(write):
            os.close(fd)
            write(tmp)
        else:
            data = write.encode("utf-8") if isinstance(write, str) else bytes(write)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        _fsync_file(tmp)
        os.chmod(tmp, _umask_mode(0o666))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(parent)
    return path


def atomic_folder(
    path: str | os.PathLike,
    fill: Callable[[Path], None],
    name: str = "path",
) -> Path:
    """Replace folder `path` as a whole with one that ``fill(tmp_folder)`` writes.

    The new folder is written beside `path` under a hidden temporary name. Then
    the old folder (if any) is renamed aside, the new one renamed into place and
    the old one deleted. A kill at any moment leaves `path` as the complete old
    folder or the complete new one; the one window where `path` is briefly
    missing (between the two renames) is repaired by the next call, which finds
    the old folder aside and restores it first (see `recover_folder`).
    Files already in `path` that `fill` does not write are not carried over.
    """
    path = check_path(path, name)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {str(path)!r} exists and is a file; expected a folder")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(
            f"{name} {str(path)!r} cannot be written: {str(parent)!r} is a file"
        )
    parent.mkdir(parents=True, exist_ok=True)
    recover_folder(path)
    tag = uuid.uuid4().hex[:8]
    new = parent / f".{path.name}.new-{tag}.tmp"
    old = parent / f".{path.name}.old.tmp"
    new.mkdir(mode=_umask_mode(0o777))
    try:
        fill(new)
        for f in new.rglob("*"):
            if f.is_file():
                _fsync_file(str(f))
        fsync_dir(new)
        if path.exists():
            os.replace(path, old)  # `old` cannot exist: recover_folder removed it
            fsync_dir(parent)
        os.replace(new, path)
        fsync_dir(parent)
    finally:
        if new.exists():
            shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return path


def recover_folder(path: str | os.PathLike) -> None:
    """Finish or undo an `atomic_folder` that a crash interrupted at `path`.

    Restores the old folder when the kill fell between the two renames, and
    removes leftover temporary folders. Readers call it before loading.
    """
    path = Path(path)
    parent = path.parent
    old = parent / f".{path.name}.old.tmp"
    if old.is_dir():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)  # the new folder made it
        else:
            os.replace(old, path)  # killed between the renames: put the old back
        fsync_dir(parent)
    if parent.is_dir():
        for leftover in parent.glob(f".{path.name}.new-*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
