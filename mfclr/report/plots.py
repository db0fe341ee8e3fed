"""PNG plots of finished runs and sweeps, for `mfclr report` (no W&B needed).

Every function takes plain data (the dicts of results.json, metrics.jsonl lines, a trials table),
writes one PNG and returns its path. matplotlib is imported lazily with the Agg backend (no
display needed); figures are closed after saving. Optuna's plots are drawn on a Study rebuilt
offline from a trials table (`study_from_trials`), not on the live searcher.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfclr.io import atomic_write_with

# One convention in every plot: pretrained variants are blue (the best one darker), the
# random-init control is grey (darker when it is the best row: it stays grey, marked by the star).
BEST_COLOUR, OTHER_COLOUR = "#1f77b4", "#9fc5e8"
CONTROL_COLOUR, BEST_CONTROL_COLOUR = "#bbbbbb", "#7f7f7f"
DPI = 120


def is_control(row: Mapping[str, Any]) -> bool:
    """A random-init control row (its encoders, or its name, say so)."""
    return "random-init" in (row.get("encoders"), row.get("name"))


def variant_colour(control: bool, best: bool) -> str:
    """The bar colour of a variant: grey for the random-init control, blue for pretrained."""
    if control:
        return BEST_CONTROL_COLOUR if best else CONTROL_COLOUR
    return BEST_COLOUR if best else OTHER_COLOUR


def _pyplot() -> Any:
    import matplotlib

    # Only pick the backend if nobody has: an interactive session keeps its own.
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI,
                                                       bbox_inches="tight"), "plot")  # fmt: skip
    finally:
        _pyplot().close(fig)
    return path


def _pct(value: Any) -> float:
    """A fraction as a percentage; NaN for a missing value (matplotlib skips it)."""
    return math.nan if value is None else 100.0 * float(value)


# ----------------------------------------------------------------------------- probe results


def draw_variants(
    ax: Any, labels: Sequence[str], rows: Sequence[Mapping[str, Any]], best: int | None
) -> list[Any]:
    """Draw `plot_variants`' bars on `ax`; returns, per row, its (accuracy, macro mAP) bars."""
    n = len(rows)
    ys = list(range(n))[::-1]  # first row at the top, as in the table
    h = 0.38
    bars = []
    for i, (y, row) in enumerate(zip(ys, rows, strict=True)):
        colour = variant_colour(is_control(row), i == best)
        pair = []
        for dy, key, hatch in ((h / 2, "accuracy", None), (-h / 2, "macro_map", "//")):
            value = _pct(row.get(key))
            pair.append(ax.barh(y + dy, 0 if math.isnan(value) else value, h, color=colour,
                                hatch=hatch, edgecolor="white"))  # fmt: skip
            text = "n/a" if math.isnan(value) else f"{value:.1f}"
            ax.text((0 if math.isnan(value) else value) + 1, y + dy, text, va="center", fontsize=8)
        bars.append(tuple(pair))
    ax.set_yticks(ys, [f"★ {lab}" if i == best else lab for i, lab in enumerate(labels)])
    if best is not None:
        ax.get_yticklabels()[best].set_fontweight("bold")
    ax.set_xlim(0, 110)
    ax.set_xlabel("test split (%)")
    ax.set_title(
        "Probe variants: accuracy (solid), macro mAP (hatched); blue = pretrained, "
        "grey = random-init control"
    )
    ax.grid(axis="x", alpha=0.3)
    return bars


def plot_variants(
    labels: Sequence[str], rows: Sequence[Mapping[str, Any]], best: int | None, path: Path
) -> Path:
    """Horizontal bars: test accuracy and macro mAP (%) of each variant (`labels[i]` names
    `rows[i]`); the best variant is starred and drawn darker, in its own colour (grey for the
    random-init control, blue for a pretrained variant)."""
    fig, ax = _pyplot().subplots(figsize=(8, 1.2 + 0.55 * max(len(rows), 1)))
    draw_variants(ax, labels, rows, best)
    return _save(fig, path)


def plot_confusion(
    matrix: Sequence[Sequence[int]], names: Sequence[str], title: str, path: Path
) -> Path:
    """Heatmap of a confusion matrix (rows = true, cols = predicted), coloured by the fraction of
    each true class, annotated with counts."""

    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    frac = counts / np.maximum(totals, 1)
    size = max(4.5, 0.6 * len(names) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    for (r, c), v in np.ndenumerate(counts):
        colour = "white" if frac[r, c] > 0.55 else "black"
        ax.text(c, r, str(v), ha="center", va="center", color=colour, fontsize=9)
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    return _save(fig, path)


def series_colours(labels: Sequence[str], controls: Collection[str]) -> list[str]:
    """Per series: grey for a random-init control, blue for a pretrained one (the first pretrained
    series dark, the others light)."""
    out, pretrained = [], 0
    for label in labels:
        if label in controls:
            out.append(CONTROL_COLOUR)
        else:
            out.append(BEST_COLOUR if pretrained == 0 else OTHER_COLOUR)
            pretrained += 1
    return out


def draw_per_class_ap(
    ax: Any, series: Mapping[str, Mapping[str, float | None]], controls: Collection[str]
) -> list[Any]:
    """Draw `plot_per_class_ap`'s bars on `ax`; returns one bar container per series."""
    names = list(next(iter(series.values())).keys()) if series else []
    k = max(len(series), 1)
    width = 0.8 / k
    bars = []
    colours = series_colours(list(series), controls)
    for j, (label, per_class) in enumerate(series.items()):
        xs = [i + (j - (k - 1) / 2) * width for i in range(len(names))]
        values = [_pct(per_class.get(n)) for n in names]
        bars.append(ax.bar(xs, [0 if math.isnan(v) else v for v in values], width, label=label,
                           color=colours[j]))  # fmt: skip
        for x, v in zip(xs, values, strict=True):
            if math.isnan(v):
                ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 105)
    ax.set_ylabel("average precision (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return bars


def plot_per_class_ap(
    series: Mapping[str, Mapping[str, float | None]],
    title: str,
    path: Path,
    controls: Collection[str] | None = None,
) -> Path:
    """Grouped bars of per-class AP (%): one group per class, one bar per series (e.g. the best
    variant and the random-init control); a class absent from test is marked n/a.

    `controls`: the labels of random-init series, drawn grey (default: labels naming
    "random-init"); the others are blue, as in `plot_variants`.
    """
    if controls is None:
        controls = [label for label in series if "random-init" in label]
    names = list(next(iter(series.values())).keys()) if series else []
    k = max(len(series), 1)
    fig, ax = _pyplot().subplots(figsize=(max(6.0, 0.7 * len(names) * k + 2), 4.5))
    draw_per_class_ap(ax, series, controls)
    ax.set_title(title)
    return _save(fig, path)


def plot_loss_curves(
    curves: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, val_key: str = "val_accuracy"
) -> Path:
    """Pretraining loss per epoch, one line per label (format); `val_key`, where logged, on a
    second axis (dashed, same colour)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    twin = None
    for i, (label, lines) in enumerate(curves.items()):
        colour = f"C{i}"
        pts = [(m["epoch"], m["loss"]) for m in lines if "epoch" in m and "loss" in m]
        ax.plot(*zip(*pts, strict=True), color=colour, marker="." if len(pts) < 30 else None,
                label=f"{label} loss")  # fmt: skip
        vals = [(m["epoch"], m[val_key]) for m in lines if m.get(val_key) is not None]
        if vals:
            twin = twin or ax.twinx()
            twin.plot(*zip(*vals, strict=True), color=colour, linestyle="--", marker="o",
                      markersize=3, label=f"{label} {val_key}")  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("contrastive loss (NT-Xent)")
    ax.set_title("Pretraining")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if twin is not None:
        twin.set_ylabel(f"{val_key} (valid split)")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize=8, loc="best")
    return _save(fig, path)


# ----------------------------------------------------------------------------- optuna


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _distribution(spec: Mapping[str, Any] | None, values: list[Any]) -> Any:
    """The Optuna distribution of one parameter: from its sweep-file spec when it is known and
    holds every value, else inferred from the values (numeric range or categories)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if spec is not None:
        kind, low, high = spec.get("type"), spec.get("low"), spec.get("high")
        if kind == "choice":
            dist: Any = CategoricalDistribution(list(spec["choices"]))
            holds = all(v in dist.choices for v in values)
        else:
            cls = IntDistribution if kind == "int" else FloatDistribution
            step = spec.get("step") if kind != "int" else int(spec.get("step") or 1)
            cast = int if kind == "int" else float
            dist = cls(cast(low), cast(high), log=bool(spec.get("log")), step=step)
            holds = all(_is_number(v) and dist.low <= v <= dist.high for v in values)
        if holds:
            return dist
    numeric = all(_is_number(v) for v in values)
    if numeric and all(isinstance(v, int) for v in values):
        return IntDistribution(min(values), max(values))
    if numeric:
        return FloatDistribution(float(min(values)), float(max(values)))
    return CategoricalDistribution(sorted(set(values), key=str))


def study_from_trials(
    trials: Sequence[Mapping[str, Any]], space: Mapping[str, Mapping[str, Any]] | None = None
) -> Any:
    """An in-memory Optuna study (maximising) rebuilt from a trials table.

    `trials`: [{"trial": name, "params": {name: value or None}, "value": float or None}], in the
    order they ran; a None value is a failed trial, a None parameter was not searched.
    `space`: the sweep file's search.space (name -> {type, low, high, log, step, choices}).
    """
    import optuna

    space = space or {}
    params = [{k: v for k, v in t["params"].items() if v is not None} for t in trials]
    names = sorted({k for p in params for k in p})
    dists = {n: _distribution(space.get(n), [p[n] for p in params if n in p]) for n in names}
    prev = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(prev)
    for t, p in zip(trials, params, strict=True):
        ok = t.get("value") is not None and math.isfinite(float(t["value"]))
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
                value=float(t["value"]) if ok else None,
                params=p,
                distributions={n: dists[n] for n in p},
                user_attrs={"trial": str(t.get("trial"))},
            )
        )
    return study


def load_study_file(path: str | Path) -> Any:
    """The study in a sweep's Optuna journal file (`study-<format>.log`), None if unreadable."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not Path(path).is_file():
        return None
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
        names = optuna.study.get_all_study_names(storage)
        return optuna.load_study(study_name=names[0], storage=storage) if names else None
    except (OSError, ValueError, KeyError):
        return None


def plot_optuna(
    study: Any, fmt: str, metric: str, out_dir: Path
) -> tuple[Path | None, Path | None, str | None]:
    """Optuna's optimisation history and parameter importances of one format's study.

    Returns (history PNG, importances PNG, why the importances are missing or None); a plot
    that Optuna cannot draw (too few finished trials, nothing varied) is None.
    """
    import matplotlib
    import optuna
    from matplotlib.ticker import MaxNLocator
    from optuna.visualization import matplotlib as ovm

    plt = _pyplot()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return None, None, "no trial finished"
    importance, why = None, None
    # rc_context: Optuna switches the global style to ggplot; keep that inside these two plots.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")  # ExperimentalWarning: the matplotlib backend is "beta"
        ax = ovm.plot_optimization_history(study, target_name=metric)
        ax.set_title(f"Optimisation history: {fmt} ({len(done)} finished trials)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        history = _save(ax.figure, out_dir / f"optuna_history_{fmt}.png")
        varied = [n for n in study.best_trial.params if len({t.params.get(n) for t in done}) > 1]
        if len({t.value for t in done}) < 2 or not varied:
            why = f"need finished trials whose parameters and {metric} differ"
            return history, None, why
        before = set(plt.get_fignums())
        try:
            ax = ovm.plot_param_importances(study, target_name=metric)
        except (ValueError, RuntimeError) as err:
            why = f"Optuna could not compute them ({err})"
            for num in set(plt.get_fignums()) - before:
                plt.close(num)
        else:
            ax.set_title(f"Parameter importances: {fmt} (PED-ANOVA on {metric})", loc="left")
            importance = _save(ax.figure, out_dir / f"optuna_importance_{fmt}.png")
    return history, importance, why
