"""Training budgets across config layers: one budget per layer, and the budget a later layer
names replaces the budgets below it (the preset's per-format steps included)."""

from __future__ import annotations

from typing import Any

from mfclr.errors import ConfigError


def one_budget(train: Any, where: str) -> None:
    """--set names one budget: steps and epochs together would leave one silently unused."""
    if isinstance(train, dict) and None not in (train.get("steps"), train.get("epochs")):
        raise ConfigError(
            f"{where} sets both train.steps and train.epochs; set one: steps (a budget in "
            "optimiser steps, whole epochs derived from the dataset) or epochs"
        )


BUDGET_KEYS = ("train.steps", "train.epochs")


def without_budgets(per_format: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`per_format` without its budget keys (formats left with nothing dropped). A layer that
    names the budget sets it for every format, so the per-format budgets of the layers below it
    go (`--set train.steps=100` on the demo, whose spectrogram has its own 700, trains both 100
    steps); the layer's own per_format entries, applied after this, still count. Sweeps budget
    every format with budget.epochs the same way."""
    out = {}
    for fmt, over in per_format.items():
        kept = {k: v for k, v in over.items() if k not in BUDGET_KEYS}
        if kept:
            out[fmt] = kept
    return out


def drop_format_budgets(data: dict[str, Any], formats: list[str]) -> None:
    """A layer that names a format's own budget replaces that format's budget below it: a
    preset's per_format steps and a --set per_format epochs would otherwise both be set, and
    the steps would silently win."""
    for fmt in formats:
        kept = {k: v for k, v in data["per_format"].get(fmt, {}).items() if k not in BUDGET_KEYS}
        data["per_format"][fmt] = kept


def names_epochs_only(train: Any) -> bool:
    """A layer that sets train.epochs and not train.steps budgets in epochs: the last layer that
    names a budget wins (`--set train.epochs=5` on a preset with train.steps trains 5 epochs)."""
    return isinstance(train, dict) and "epochs" in train and "steps" not in train
