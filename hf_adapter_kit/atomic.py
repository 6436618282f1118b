"""Replacing a folder so that a process killed at any moment leaves the old folder or the new one, whole.

On Linux, ``renameat2(RENAME_EXCHANGE)`` swaps two paths in one atomic step. Elsewhere (or on a file system that
refuses it) the old folder is first renamed aside and the new one renamed in; the short window between the two
renames is covered by :func:`recover`, which puts the aside copy back if the target is missing.

Folders and files come out with the permissions ``os.makedirs`` and ``open`` give (0755 and 0644 under the usual
umask 022), like the libraries' own folders: ``tempfile.mkdtemp`` would make the folder 0700, and safetensors writes
its files 0600, so a folder saved for a team or a server was readable by its owner alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import stat
import uuid
from pathlib import Path


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
    for stale in [*asides, *parent.glob(f".{target.name}.saving-*")]:
        shutil.rmtree(stale, ignore_errors=True)
