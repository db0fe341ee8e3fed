"""One process per run folder: an exclusive lock taken before anything is written.

Two `mfclr pretrain` (or `run`, `sweep`, `probe`) on one `--out` would interleave their metrics
and overwrite each other's files. The first process holds an `fcntl.flock` on `<folder>/.lock`
(its pid and host written inside, for the second one's message); the kernel drops the lock when
the holder exits, however it exits, so a killed run never blocks the next one. The lock is
re-entrant within a process (`mfclr run` locks its folder, then each pretraining folder inside
it, then probes into the same folder). Remote storage (s3://) is not locked: object stores have
no such lock (docs/cluster.md).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mfclr.errors import StorageError
from mfclr.io import storage_error

LOCK_FILE = ".lock"
_held: dict[Path, tuple[int, int]] = {}  # folder -> (fd, depth) of the locks this process holds


class FolderBusy(StorageError):
    """Another live process holds the folder's lock."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def folder_lock(folder: str | Path, what: str = "--out") -> Iterator[Path]:
    """Hold the exclusive lock of `folder` (created if missing) for the block; a second process
    gets FolderBusy naming the folder and the holder's pid."""
    folder = Path(folder).expanduser().resolve()
    if folder in _held:
        fd, depth = _held[folder]
        _held[folder] = (fd, depth + 1)
        try:
            yield folder
        finally:
            fd, depth = _held[folder]
            _held[folder] = (fd, depth - 1)
        return
    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise storage_error(path, err, "lock file") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise FolderBusy(
            f"{what} '{folder}' is in use by another mfclr process (pid {_holder(path)}); "
            f"wait for it to finish, stop it, or choose another {what}"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode())
    _held[folder] = (fd, 1)
    try:
        yield folder
    finally:
        fd, depth = _held.pop(folder)
        os.close(fd)  # closing the descriptor releases the flock
