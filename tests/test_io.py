"""mfclr/io.py: atomic writes with ordinary permissions, a full disk as one line, stale temp files
of killed writers removed (and only those), folders checked before any work starts."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mfclr.io as mio
from mfclr.checkpoint import atomic_save
from mfclr.errors import StorageError
from mfclr.io import (
    STALE_AFTER_S,
    atomic_write_text,
    check_writable_dir,
    clean_stale_temps,
    git_sha,
    temp_name,
)

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set a umask for one test; the old one comes back after it."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def test_files_get_0644_or_whatever_the_umask_allows(tmp_path: Path, umask) -> None:
    from mfclr.probe.embed import save_embeddings
    from mfclr.report.results import write_results

    umask(0o022)
    written = [
        atomic_write_text(tmp_path / "a.txt", "hello"),
        atomic_save({"w": torch.zeros(2)}, tmp_path / "encoder.pt"),
        *write_results(tmp_path, [], {"dataset": "d"}),
        save_embeddings(tmp_path / "e.npz", {"train": np.zeros((1, 2))}, {"train": np.zeros(1)},
                        ["x"], {"train": ["t0"]}, {}),
    ]  # fmt: skip
    assert {p.name: _mode(p) for p in written} == {p.name: 0o644 for p in written}
    umask(0o077)
    assert _mode(atomic_write_text(tmp_path / "private.txt", "x")) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_full_disk_is_one_line_and_the_old_file_survives(tmp_path: Path, monkeypatch) -> None:
    last = atomic_save({"epoch": 1}, tmp_path / "checkpoints" / "last.pt")

    def full(fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(mio, "_write_chunk", full)
    with pytest.raises(StorageError) as err:
        atomic_save({"epoch": 2, "w": torch.zeros(1000)}, last)
    message = str(err.value)
    assert str(last) in message and "No space left on device" in message and "\n" not in message
    assert "inline_container" not in message
    assert torch.load(last, weights_only=True)["epoch"] == 1  # untouched
    assert os.listdir(last.parent) == ["last.pt"]  # no temp file left


def _age(path: Path, seconds: float) -> None:
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


def test_only_stale_temps_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    here = temp_name("last.pt")  # this process: still writing
    killed = here.replace(f".tmp-{os.getpid()}@", f".tmp-{dead}@")  # this host, pid gone
    elsewhere_old = ".last.pt.tmp-12@other-host-0a1b2c3d"
    elsewhere_new = ".encoder.pt.tmp-12@other-host-0a1b2c3e"
    mkstemp_old = ".last.pt.x8f2k1_q.tmp"  # what earlier versions left: 0 bytes after a kill
    keep = [here, elsewhere_new, ".gitignore", ".validate_storage_marker", "notes.tmp"]
    for name in [*keep, killed, elsewhere_old, mkstemp_old]:
        (tmp_path / name).write_bytes(b"")
    cache_tmp = tmp_path / ".gtzan-0123456789abcdef.tmp-1-0a1b2c3d"  # an old cache build
    cache_tmp.mkdir()
    (cache_tmp / "train.i16").write_bytes(b"\0" * 8)
    for path in (tmp_path / elsewhere_old, tmp_path / mkstemp_old, cache_tmp / "train.i16"):
        _age(path, STALE_AFTER_S + 60)
    _age(cache_tmp, STALE_AFTER_S + 60)
    removed = clean_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(
        [killed, elsewhere_old, mkstemp_old, cache_tmp.name]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_check_writable_dir(tmp_path: Path) -> None:
    made = check_writable_dir(tmp_path / "a" / "b", "--out")
    assert made.is_dir() and list(made.iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match=r"--out '.*file' is a file, not a folder"):
        check_writable_dir(tmp_path / "file", "--out")
    with pytest.raises(StorageError, match=r"--out '.*file/run' lies below the file '.*file'"):
        check_writable_dir(tmp_path / "file" / "run", "--out")


def test_an_unwritable_folder_is_named(tmp_path: Path, monkeypatch) -> None:
    # Root ignores permission bits and no read-only filesystem is at hand: the kernel's answer
    # for one (EROFS) is made by the one call that creates the probe file.
    def read_only(self: Path, *args: object, **kw: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "touch", read_only)
    with pytest.raises(StorageError, match=r"data.cache_dir '.*' is not writable \(Read-only"):
        check_writable_dir(tmp_path, "data.cache_dir")


def test_every_atomic_write_goes_through_io() -> None:
    offenders = []
    for path in (ROOT / "mfclr").rglob("*.py"):
        text = path.read_text()
        if path.name != "io.py" and re.search(r"mkstemp|os\.replace\(", text):
            offenders.append(path.name)
    assert offenders == []


def test_git_sha() -> None:
    sha = git_sha()
    assert sha is None or re.fullmatch(r"[0-9a-f]{40}", sha)
