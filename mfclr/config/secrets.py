"""Credentials never ride in a config: the W&B key file, and the check that refuses a config
holding the value of a secret. Torch-free: `load_config` runs the check on every config it
builds, in every tracking mode, before anything is written."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mfclr.config.formats import flatten
from mfclr.errors import ConfigError

log = logging.getLogger("mfclr.tracking")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
KEY_FILE_ENV = "WANDB_API_KEY_FILE"
MIN_SECRET = 16  # shorter values (a "1", a path) would match by chance


def api_key_from_file(*, strict: bool = True) -> str | None:
    """The W&B API key in the file that `WANDB_API_KEY_FILE` names; None when it is unset.

    strict: a missing, unreadable or empty file is a ConfigError naming it (else None). A file
    that other users may read is used, with a warning to chmod it.
    """
    raw = os.environ.get(KEY_FILE_ENV, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    try:
        key = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as err:
        if not strict:
            return None
        why = getattr(err, "strerror", None) or type(err).__name__
        raise ConfigError(
            f"{KEY_FILE_ENV}='{path}' cannot be read ({why}); fix it or unset it"
        ) from None
    if not key:
        if not strict:
            return None
        raise ConfigError(
            f"{KEY_FILE_ENV}='{path}' is empty; write the W&B API key into it or unset it"
        )
    if strict and mode & 0o077:
        log.warning("%s '%s' is readable by other users (mode %03o); chmod 600 it",
                    KEY_FILE_ENV, path, mode & 0o777)  # fmt: skip
    return key


def check_no_secrets(config: Mapping[str, Any], what: str) -> None:
    """Refuse a config holding the value of a secret-looking environment variable, or the key
    of `WANDB_API_KEY_FILE`; the error names the config key, never the value."""
    secrets = [(f"${n}", v) for n, v in os.environ.items() if _SECRET_NAME.search(n)]
    from_file = api_key_from_file(strict=False)
    if from_file:
        secrets.append((f"the file ${KEY_FILE_ENV}", from_file))
    secrets = [(n, v) for n, v in secrets if len(v) >= MIN_SECRET]
    if not secrets:
        return
    for key, value in flatten(dict(config)).items():
        text = json.dumps(value, default=str)
        for name, secret in secrets:
            if secret in text:
                raise ConfigError(
                    f"{what}: config key '{key}' holds the value of {name}; remove it "
                    "(credentials belong in the environment or a key file only)"
                )
