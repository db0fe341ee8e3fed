"""What every config section shares: strict frozen pydantic models, the YAML loader, and the
range check. No torch, no Ray."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.2 rules; 1.1 makes it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with mfclr's loader."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class _Section(BaseModel):
    # strict: "0.5" is not a float and 1.0 is not an int; YAML already gives real types.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _check_range(lo: float, hi: float, name: str) -> None:
    if lo > hi:
        raise ValueError(f"{name}: min ({lo}) is above max ({hi}); swap them")
