"""Replacing a folder so that a process killed at any moment leaves the old folder or the new one, whole.

On Linux, ``renameat2(RENAME_EXCHANGE)`` swaps two paths in one atomic step. Elsewhere (or on a file system that
refuses it) the old folder is first renamed aside and the new one renamed in; the short window between the two
renames is covered by :func:`recover`, which puts the aside copy back if the target is missing.

Writers stage beside their target, in ``.<name>.saving-<random>``: hidden, so that no glob of results
(``checkpoint-*``, ``*.json``) ever takes one for a result, and removed by the next write of the same target
(:func:`clear_staging`), since a killed process cleans up nothing. Single files go the same way (:func:`write_file`).
Scratch folders in a place several processes share (the system's temporary folder) are :func:`scratch_dir`'s: there a
leftover is only removed once the process that made it is gone.

Folders and files come out with the permissions ``os.makedirs`` and ``open`` give (0755 and 0644 under the usual
umask 022), like the libraries' own folders: ``tempfile.mkdtemp`` would make the folder 0700, and safetensors writes
its files 0600, so a folder saved for a team or a server was readable by its owner alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


try:
    import fcntl
except ImportError:  # Windows: scratch folders left by killed processes are not cleaned up there
    fcntl = None


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_renameat2 = getattr(_LIBC, "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the platform or file system cannot."""
    if _renameat2 is None:
        return False
    result = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _aside(target: Path) -> Path:
    return target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")


def staging_dir(target: Path, tag: str = "saving") -> Path:
    """A new empty folder ``.<name>.<tag>-<random>`` beside ``target``, with the mode ``os.makedirs`` gives."""
    while True:
        candidate = target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}")
        try:
            candidate.mkdir()  # mode 0o777 less the umask (what tempfile.mkdtemp would make 0o700)
        except FileExistsError:
            continue
        return candidate


def normalize_modes(folder: Path) -> None:
    """Give the folder's subfolders the folder's own mode and its files what ``open`` gives new files.

    ``folder`` must have been made with ``mkdir`` (its mode is then 0o777 less the umask, or what a default ACL says),
    so files get that mode without the execute bits: 0o644 under umask 022, 0o640 under 027.
    """
    folder_mode = stat.S_IMODE(folder.stat().st_mode)
    file_mode = folder_mode & 0o666
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(folder_mode if path.is_dir() else file_mode)


def replace_dir(new: Path, target: Path) -> None:
    """Move the complete folder ``new`` to ``target``, replacing what is there without a moment of absence."""
    if not target.exists():
        os.replace(new, target)  # atomic: the target appears whole or not at all
    elif _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the previous version
    else:
        old = _aside(target)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)


def recover(target: Path, *, clean: bool = False) -> None:
    """After a crash between the two fallback renames, put the previous folder back.

    With ``clean`` (the writer, before it saves; one writer per folder at a time) also remove what killed saves left.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return
    asides = sorted(parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and asides:
        os.replace(asides.pop(), target)
    if not clean:
        return
    for stale in asides:
        _remove(stale)
    clear_staging(target)


def clear_staging(target: Path, tag: str = "saving") -> None:
    """Remove the staging folders and files (``.<name>.<tag>-*``) that killed writes of ``target`` left beside it.

    Only for the one writer of ``target``, before it writes: another writer's staging would go too.
    """
    target = Path(target)
    if target.parent.is_dir():
        for stale in target.parent.glob(f".{target.name}.{tag}-*"):
            _remove(stale)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_file(target: str | os.PathLike, data: str | bytes) -> Path:
    """Write the file ``target`` so that a process killed at any moment leaves the previous file or the new one,
    whole: the data go to a staging file beside it, renamed over it once written. One writer per file at a time."""
    target = Path(target)
    clear_staging(target)
    staging = target.with_name(f".{target.name}.saving-{uuid.uuid4().hex[:8]}")
    try:
        with open(staging, "wb" if isinstance(data, bytes) else "w") as handle:  # the mode `open` gives
            handle.write(data)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target


@contextlib.contextmanager
def scratch_dir(prefix: str, parent: str | os.PathLike | None = None) -> Iterator[Path]:
    """A new private folder ``<prefix><random>`` in ``parent`` (default: the system's temporary folder), removed on
    exit; one that a killed process left behind is removed by the next call with the same prefix.

    Several processes may work in the same ``parent`` at once, so a folder is only stale once its owner is gone:
    each owner holds an exclusive ``flock`` on ``<folder>.lock`` while the folder lives, which the system releases
    when the owner dies, however it dies (a process id could be reused; a lock cannot outlive its process).
    """
    parent = Path(parent or tempfile.gettempdir())
    if fcntl is None:  # no locks: clean up this folder alone
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    _remove_abandoned(parent, prefix)
    descriptor, lock, folder = _claim(parent, prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the folder first: a lock file alone is cleaned up by anyone
        lock.unlink(missing_ok=True)
        os.close(descriptor)


def _claim(parent: Path, prefix: str) -> tuple[int, Path, Path]:
    """A locked ``<name>.lock`` and the new folder ``<name>`` (mode 0700, as ``tempfile`` makes them)."""
    while True:
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        lock = parent / f"{name}.lock"
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except FileExistsError:
            continue
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:  # another process's clean-up may have taken the lock file between its creation and the lock
            still_ours = os.path.samestat(os.fstat(descriptor), os.stat(lock))
        except FileNotFoundError:
            still_ours = False
        if not still_ours:
            os.close(descriptor)
            continue
        folder = parent / name
        folder.mkdir(mode=0o700)
        return descriptor, lock, folder


def _remove_abandoned(parent: Path, prefix: str) -> None:
    """Remove the folders of ``prefix`` whose lock no process holds: their owners died before cleaning up."""
    for lock in parent.glob(f"{prefix}*.lock"):
        try:
            descriptor = os.open(lock, os.O_RDWR)
        except OSError:  # gone meanwhile, or another user's
            continue
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: its owner is alive
                continue
            shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
            lock.unlink(missing_ok=True)
        finally:
            os.close(descriptor)
