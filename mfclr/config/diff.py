"""What changed between a saved config (or sweep file) and the one that would resume it, key by
key: a resume that would train on under other settings is refused, naming the keys."""

from __future__ import annotations

from typing import Any

from mfclr.config.formats import flatten

SHOWN = 4  # differing keys named in a refusal before "and N more"


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    """`key` is one of `prefixes`, or lies in a section "x." (the section's own key included: an
    empty section flattens to it)."""
    return any(key == p or key == p.rstrip(".") or (p.endswith(".") and key.startswith(p))
               for p in prefixes)  # fmt: skip


def changes(old: dict[str, Any], new: dict[str, Any], allowed: tuple[str, ...] = ()
            ) -> dict[str, list[Any]]:  # fmt: skip
    """Dotted keys whose value differs -> [old, new], leaving out `allowed` (exact keys, or
    sections ending in "."). A key missing on one side counts as None."""
    a, b = flatten(old), flatten(new)
    return {
        key: [a.get(key), b.get(key)]
        for key in sorted(a.keys() | b.keys())
        if not _under(key, allowed) and a.get(key) != b.get(key)
    }


def describe(changed: dict[str, list[Any]]) -> str:
    """`train.lr 0.001 -> 0.01, ... and 3 more` for a one-line message."""
    items = list(changed.items())
    shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
