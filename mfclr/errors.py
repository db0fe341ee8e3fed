"""User-facing errors. Each carries a one-line message naming the thing and the fix; the CLI
prints it as `mfclr: error: ...` and exits non-zero instead of showing a traceback."""

from __future__ import annotations


class MfclrError(Exception):
    """Base of every error the user can fix; str(err) is one line."""


class ConfigError(MfclrError, ValueError):
    """An unknown key, a wrong type or an impossible value in a config or sweep file."""


class DataError(MfclrError):
    """A missing folder, an empty class, a dataset that cannot be used as asked."""


class AudioError(DataError):
    """One audio file that cannot be used: corrupt, empty, too short, NaN/inf, wrong rate."""


class CheckpointError(MfclrError):
    """A checkpoint that is missing, of the wrong kind, or for another encoder."""


class StorageError(MfclrError):
    """A folder or file that cannot be written: a file in the way, read-only, disk full."""
