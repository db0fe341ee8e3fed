"""Files written so that nothing already written is ever lost, and the checks before writing.

- `atomic_write_bytes` / `atomic_write_text` / `atomic_write_with`: write a temp file beside the
  target, fsync it, rename it over the target, fsync the folder. A crash leaves the old file or the
  new one, never half of either. Files get mode 0666 minus the umask (0644 usually), like `open`.
- `temp_name` / `clean_stale_temps`: every temp file or folder is named `.<target>.tmp-<pid>@<host>
  -<random>`, so the next start can remove what a killed writer left, without touching the temp
  file of a writer that is still running.
- `check_writable_dir`: before any work starts, a folder we will write into must be a folder (not
  a file, not below a file) on a writable filesystem.
- `git_sha`: the commit of the source tree.

Write failures (disk full, read-only filesystem, permissions) raise `StorageError`: one line
naming the path, the reason and the fix.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from mfclr.errors import StorageError

log = logging.getLogger(__name__)

# A temp file untouched this long is stale even when its writer's pid cannot be checked (another
# host on shared storage, an old-style name): every writer here touches its file continuously.
STALE_AFTER_S = 10 * 60
_TEMP = re.compile(r"^\..+\.tmp-(?P<pid>\d+)@(?P<host>.+)-[0-9a-f]{8}$")
# Names of earlier versions (mkstemp's `.<name>.<random>.tmp`, `.<name>.tmp-<pid>-<random>`,
# the embedded generator's `.<name>.old-<random>`): removed by age only.
_OLD_TEMP = re.compile(r"^\..+(\.tmp|\.tmp-\d+-[0-9a-f]{8}|\.old-[0-9a-f]{8})$")
_CHUNK = 16 * 1024**2  # bytes per os.write call


def _host() -> str:
    return socket.gethostname() or "localhost"


def temp_name(target: str) -> str:
    """A hidden temp name beside `target` that says which process on which host owns it."""
    return f".{target}.tmp-{os.getpid()}@{_host()}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- errors


def storage_error(path: Path | str, err: OSError, what: str = "file") -> StorageError:
    """A one-line StorageError for a failed write of `path`, with the fix for its errno."""
    code = err.errno
    reason = os.strerror(code) if code else (str(err) or type(err).__name__)
    if code == errno.ENOSPC or code == errno.EDQUOT:
        fix = "free space on that disk or write somewhere else (another --out or data.cache_dir)"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "that location is not writable; choose a writable folder (another --out)"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        fix = "a file is in the way; remove it or choose another path"
    else:
        fix = "check the path, its permissions and the free space"
    return StorageError(f"cannot write {what} '{path}': {reason}; {fix}")


def _write_chunk(fd: int, data: memoryview) -> int:
    """The one low-level write of this module (a test makes it fail with ENOSPC)."""
    return os.write(fd, data)


# ----------------------------------------------------------------------------- atomic writes


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable; a filesystem that cannot fsync a folder is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _FdWriter(io.RawIOBase):
    """A write-only, unseekable binary file over a raw fd, writing through `_write_chunk` only
    (zipfile, and so np.savez and torch.save, stream into it)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        # The OSError of a failed write: a caller such as torch.save may turn it into its own
        # RuntimeError ("[enforce fail at inline_container.cc]"), hiding that the disk is full.
        self.error: OSError | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += _write_chunk(self.fd, view[done : done + _CHUNK])
        except OSError as err:
            self.error = err
            raise
        return done

    def writable(self) -> bool:
        return True


def atomic_write_with(
    path: Path | str, write: Callable[[BinaryIO], None], what: str = "file"
) -> Path:
    """Call `write(fh)` on a temp file beside `path`, then rename it to `path`.

    The temp file is created with mode 0666 & ~umask (what `open` gives), fsynced before the
    rename, and the folder fsynced after it. On any failure the temp file is removed and the old
    `path` is untouched; an OSError becomes a one-line StorageError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise storage_error(path.parent, err, "folder") from None
    tmp = path.parent / temp_name(path.name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise storage_error(path, err, what) from None
    writer = _FdWriter(fd)
    try:
        try:
            write(writer)
            os.fsync(fd)
        finally:
            os.close(fd)  # the writer only borrows the fd
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        failure = writer.error or (err if isinstance(err, OSError) else None)
        if failure is not None:
            raise storage_error(path, failure, what) from None
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path | str, data: bytes, what: str = "file") -> Path:
    """Write `data` to `path` atomically (see `atomic_write_with`)."""
    return atomic_write_with(path, lambda fh: fh.write(data), what)


def atomic_write_text(path: Path | str, text: str, what: str = "file") -> Path:
    """Write `text` (UTF-8) to `path` atomically (see `atomic_write_with`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), what)


# ----------------------------------------------------------------------------- stale temp files


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _newest_mtime(path: Path) -> float:
    """The latest modification time of `path` and, for a folder, of what is inside it."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for child in path.rglob("*"):
            try:
                newest = max(newest, child.lstat().st_mtime)
            except OSError:
                continue
    return newest


def is_stale_temp(path: Path, now: float | None = None) -> bool:
    """True for a temp file/folder of ours whose writer is gone.

    Gone means: its pid is dead on this host, or it has not been touched for STALE_AFTER_S
    (a writer on another host of a shared filesystem, or a name without a pid).
    """
    m = _TEMP.match(path.name)
    if m is None and not _OLD_TEMP.match(path.name):
        return False
    try:
        if m is not None and m["host"] == _host() and not _pid_alive(int(m["pid"])):
            return True
        return (now or time.time()) - _newest_mtime(path) > STALE_AFTER_S
    except OSError:  # vanished meanwhile: its writer finished
        return False


def clean_stale_temps(folder: Path | str) -> list[Path]:
    """Remove the stale temp files and folders directly inside `folder`; returns them.

    Called when a run, a cache build or a probe starts: a kill during an atomic write or a cache
    build leaves its temp behind. A temp whose writer still runs is left alone.
    """

    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(".")]
    except OSError:
        return []
    removed = []
    for path in entries:
        if not is_stale_temp(path):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("could not remove the stale temp %s (%s)", path, err.strerror)
            continue
        removed.append(path)
    if removed:
        names = ", ".join(p.name for p in removed[:5]) + (" ..." if len(removed) > 5 else "")
        log.info("removed %d stale temp file(s) of an interrupted write in %s: %s",
                 len(removed), folder, names)  # fmt: skip
    return removed


# ----------------------------------------------------------------------------- checks


def check_writable_dir(path: Path | str, what: str) -> Path:
    """Make sure `path` is (or can become) a writable folder, before any work starts.

    Creates it (and its parents) if missing, then creates and removes a probe file in it.
    Raises StorageError naming `path`, `what` (e.g. "--out") and the fix when `path` is a file,
    lies below a file, or is on a read-only, full or forbidden filesystem.
    """
    path = Path(path).expanduser()
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == path else f"lies below the file '{parent}'"
            raise StorageError(
                f"{what} '{path}' {where}, not a folder; remove that file or choose another {what}"
            )
        if parent.is_dir():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / temp_name("write-check")
        probe.touch()
        probe.unlink()
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise StorageError(
            f"{what} '{path}' is not writable ({reason}); choose a writable folder for {what}"
        ) from None
    return path


def atomic_write_json(path: Path | str, obj: Any, what: str = "file") -> Path:
    """Indented JSON (one trailing newline), written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n", what)


def append_json_line(path: Path | str, obj: Any) -> None:
    """Append one JSON line to a log such as metrics.jsonl (flushed at once). Appends are not
    atomic: readers skip a torn last line (a kill mid-write)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(obj) + "\n")
    except OSError as err:
        raise storage_error(path, err, "log") from None


def is_remote(path: str) -> bool:
    """True for a URI (s3://, gs://, ...), False for a local folder."""
    return "://" in path and not path.startswith("file://")


# ----------------------------------------------------------------------------- provenance


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the source tree, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None
