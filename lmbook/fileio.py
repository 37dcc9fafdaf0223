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

__all__ = ["atomic_write", "atomic_folder", "check_path", "remove_stale_temps"]


def check_path(path: object, name: str = "path") -> Path:
    """`path` as a Path, or a TypeError naming `name` when it is not path-like."""
    if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"{name} must be a str or os.PathLike, got {type(path).__name__}"
        )
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
    prefix = f".{path.name}.{os.getpid()}-"  # the pid tells a live writer's file
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=parent)
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
    remove_stale_temps(parent, path.name)
    return path


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> None:
    """Delete hidden temporary files that killed `atomic_write` calls left in folder.

    These are files ``.<name>.<pid>-<random>.tmp`` (only those of target `name`
    when it is given). A file whose writer process still runs is kept, so a
    concurrent writer is never disturbed; one with no pid in its name is stale.
    POSIX only: elsewhere nothing is removed.
    """
    folder = Path(folder)
    if os.name != "posix" or not folder.is_dir():
        return
    start = "." if name is None else f".{name}."
    with os.scandir(folder) as entries:
        found = [
            e.name
            for e in entries
            if e.name.startswith(start) and e.name.endswith(".tmp") and e.is_file()
        ]
    for leftover in found:
        tag = leftover[len(start) : -len(".tmp")]
        if name is not None and "." in tag:
            continue  # the temporary file of another target, e.g. "<name>.json"
        pid = tag.rpartition(".")[2].partition("-")[0]
        if not (pid.isascii() and pid.isdigit() and _alive(int(pid))):
            (folder / leftover).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, and belongs to someone else
        return True
    return True


def atomic_folder(
    path: str | os.PathLike,
    fill: Callable[[Path], None],
    name: str = "path",
    keep_others: bool = False,
) -> Path:
    """Replace folder `path` as a whole with one that ``fill(tmp_folder)`` writes.

    The new folder is written beside `path` under a hidden temporary name. Then
    the old folder (if any) is renamed aside, the new one renamed into place and
    the old one deleted. A kill at any moment leaves `path` as the complete old
    folder or the complete new one; the one window where `path` is briefly
    missing (between the two renames) is repaired by the next call, which finds
    the old folder aside and restores it first (see `recover_folder`).
    Files already in `path` that `fill` does not write are dropped, unless
    ``keep_others=True``: then they are carried over (hard-linked, or copied).
    """
    path = check_path(path, name)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{name} {str(path)!r} exists and is a file; expected a folder"
        )
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
        for f in new.rglob("*"):  # the mode open() gives (safetensors makes 0o600)
            if f.is_file() and not f.is_symlink():
                os.chmod(f, _umask_mode(0o666))
        if keep_others and path.is_dir():
            _carry_over(path, new)
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


def _carry_over(src: Path, dst: Path) -> None:
    """Link (or copy) every entry of src that dst lacks into dst."""
    for entry in src.iterdir():
        target = dst / entry.name
        if target.exists() or entry.name.endswith(".tmp"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            try:
                os.link(entry, target)
            except OSError:
                shutil.copy2(entry, target)


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
