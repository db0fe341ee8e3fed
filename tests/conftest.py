"""pytest: this folder (tests/) is on sys.path (conftest's folder, prepend import mode), so
tests in sub-folders import the shared helpers (helpers.py, data_fixtures.py, faults.py,
wandb_files.py) by name. Test file names are unique across sub-folders for the same reason."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's one data cache: the tiny preset's embedded dataset is generated and decoded
    once, and every pipeline test reads it (a cache is keyed by what it holds, so tests that
    need another dataset get another folder inside it)."""
    return tmp_path_factory.mktemp("tiny-cache")
