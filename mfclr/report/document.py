"""`mfclr report DIR`: report.md with PNG plots of a finished run or sweep folder (no W&B).

Reads what `mfclr run` / `mfclr sweep` wrote: results.json (the variants table, label names;
for a sweep also "best" -> format -> trials), pretrain/<format>/metrics.jsonl (a run), the best
trial's Tune log tune/<format>/<trial>/result.json, sweep.yaml and the Optuna study files
study-<format>.log (a sweep). Writes:

    DIR/report.md         the variants table (as results_table, best starred), a variant x head
                          pivot, the best variant's confusion matrix and per-class AP (vs the
                          random-init control), gate weights, pretraining curves, sweep trials
    DIR/report/*.png      variants, confusion_matrix, per_class_ap, pretrain_loss,
                          optuna_history_<format>, optuna_importance_<format>

Every number in report.md's tables comes from results.json with results_table's rounding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mfclr.config import yaml_load
from mfclr.errors import DataError
from mfclr.io import atomic_write_text
from mfclr.report import plots as P
from mfclr.report.markdown import (
    BEST_KEY,
    BEST_MARK,
    best_indices,
    best_sentence,
    cell,
    format_confusion,
    pct,
    pivot_table,
    results_table,
    row_label,
)
from mfclr.report.results import read_results

REPORT_DIR = "report"  # the PNGs, next to report.md


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON lines of a metrics file; a torn or foreign line (a run killed mid-write) is skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def pretrain_curves(run_dir: Path, results: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per-epoch metrics per format: `pretrain/<format>/metrics.jsonl` of a run folder, or for a
    sweep the best trial's Tune log `tune/<format>/<trial>/result.json` (when stored locally)."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(run_dir.glob("pretrain/*/metrics.jsonl")):
        curves[path.parent.name] = _read_jsonl(path)
    for fmt, best in (results.get("best") or {}).items():
        path = run_dir / "tune" / fmt / str(best.get("trial")) / "result.json"
        if fmt not in curves and path.is_file():
            curves[f"{fmt} (trial {best['trial']})"] = _read_jsonl(path)
    return {k: v for k, v in curves.items() if any("loss" in m for m in v)}


def _trial_number(name: Any) -> int:
    """NNN of a `<format>_<NNN>` trial name: the order Optuna proposed it in (else 0)."""
    tail = str(name).rpartition("_")[2]
    return int(tail) if tail.isdigit() else 0


def sweep_trials(results: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """format -> trials table [{trial, params, value}] from a sweep's results.json ("best" ->
    format -> "trials", each with its Tune config and validation metric), in trial order."""
    metric = results.get("validation_metric", "val_accuracy")
    tables = {}
    for fmt, best in (results.get("best") or {}).items():
        rows = []
        for t in best.get("trials") or []:
            config = {k: v for k, v in (t.get("config") or {}).items() if k != "format"}
            rows.append({"trial": t.get("trial"), "params": config, "value": t.get(metric)})
        tables[fmt] = sorted(rows, key=lambda r: _trial_number(r["trial"]))
    return tables


def _is_control(row: Mapping[str, Any]) -> bool:
    return "random-init" in (row.get("encoders"), row.get("name"))


def _compare_with(
    rows: Sequence[Mapping[str, Any]], best: int, best_key: str
) -> Mapping[str, Any] | None:
    """What the best row's per-class AP is drawn against: the random-init control with its head
    (else any control); when the control itself is best, the best trained variant."""
    row = rows[best]
    if _is_control(row):
        others = [i for i in range(len(rows)) if not _is_control(rows[i])]
        top = sorted(best_indices([rows[i] for i in others], best_key))
        return rows[others[top[0]]] if top else None
    controls = [r for r in rows if _is_control(r)]
    same = [r for r in controls if r.get("head") == row.get("head")]
    own = [r for r in same if r.get("name") == row.get("control")]  # its paired control
    same = own + same
    return (same or controls or [None])[0]


def _fmt_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else cell(v)


def _img(alt: str, path: Path) -> str:
    return f"![{alt}]({REPORT_DIR}/{path.name})"


def _best_sections(
    rows: Sequence[Mapping[str, Any]], best: int, names: list[str], plots: Path, best_key: str
) -> list[str]:
    """Confusion matrix and per-class AP (vs the random-init control) of the best variant."""
    row, label = rows[best], row_label(rows[best])
    out = []
    if row.get("confusion_matrix") is not None and names:
        table = format_confusion(row["confusion_matrix"], names)  # checks the shape first
        png = P.plot_confusion(
            row["confusion_matrix"],
            names,
            f"Confusion matrix: {label} (test)",
            plots / "confusion_matrix.png",
        )
        out += [f"## Confusion matrix: {cell(label)} (test)", "", _img("confusion matrix", png)]
        out += ["", table, ""]
    per_class = row.get("per_class_ap") or {}
    if per_class:
        other = _compare_with(rows, best, best_key)
        series = {label: per_class}
        if other is not None:
            series[row_label(other)] = other.get("per_class_ap") or {}
        controls = [row_label(r) for r in (row, other) if r is not None and _is_control(r)]
        png = P.plot_per_class_ap(
            series, "Per-class average precision (test)", plots / "per_class_ap.png", controls
        )
        lines = [
            f"| class | {' | '.join(cell(k) + ' AP (%)' for k in series)} |",
            "|---|" + "---:|" * len(series),
        ]
        lines += [
            f"| {cell(c)} | " + " | ".join(pct(s.get(c)) for s in series.values()) + " |"
            for c in per_class
        ]
        out += ["## Per-class AP (test)", "", _img("per-class AP", png), "", *lines, ""]
    return out


def _gate_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    gated = [r for r in rows if (r.get("probe_info") or {}).get("gate_weights")]
    if not gated:
        return []
    fmts = list(gated[0]["probe_info"]["gate_weights"])
    out = [
        "## Gated fusion: mean gate weight per format (test)",
        "",
        "| variant | " + " | ".join(fmts) + " |",
        "|---|" + "---:|" * len(fmts),
    ]
    for r in gated:
        w = r["probe_info"]["gate_weights"]
        out.append(
            f"| {cell(row_label(r))} | " + " | ".join(f"{w.get(f, 0):.3f}" for f in fmts) + " |"
        )
    return [*out, ""]


def _pretrain_section(curves: Mapping[str, list[dict[str, Any]]], plots: Path) -> list[str]:
    if not curves:
        return []
    png = P.plot_loss_curves(curves, plots / "pretrain_loss.png")
    out = [
        "## Pretraining",
        "",
        _img("pretraining loss", png),
        "",
        "| format | epochs | first loss | last loss | last val_accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, lines in curves.items():
        losses = [m for m in lines if "loss" in m]
        vals = [m["val_accuracy"] for m in lines if m.get("val_accuracy") is not None]
        last_val = f"{vals[-1]:.3f}" if vals else "—"
        out.append(
            f"| {cell(label)} | {losses[-1].get('epoch', len(losses))} | "
            f"{losses[0]['loss']:.4f} | {losses[-1]['loss']:.4f} | {last_val} |"
        )
    return [*out, ""]


def _search_space(path: Path) -> dict[str, Any]:
    """search.space of the sweep file copied into the sweep folder ({} if absent or unreadable:
    the parameter ranges are then inferred from the trials)."""
    try:
        spec = yaml_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except yaml.YAMLError:
        return {}
    space = ((spec if isinstance(spec, dict) else {}).get("search") or {}).get("space")
    return space if isinstance(space, dict) else {}


def _sweep_section(results: Mapping[str, Any], run_dir: Path, plots: Path) -> list[str]:
    """Per format: the trials table (best starred), Optuna's history and importances."""
    tables = sweep_trials(results)
    if not tables:
        return []
    metric = str(results.get("validation_metric", "val_accuracy"))
    space = _search_space(run_dir / "sweep.yaml")
    out = [f"## Sweep {cell(results.get('sweep', ''))}: trials per format (validation split)", ""]
    for fmt, trials in tables.items():
        best = str((results["best"][fmt] or {}).get("trial"))
        names = sorted({k for t in trials for k, v in t["params"].items() if v is not None})
        out += [f"### {fmt}: {len(trials)} trials, best {best}", ""]
        out += [f"| trial | {' | '.join(names)} | {metric} |", "|---|" + "---:|" * (len(names) + 1)]
        for t in trials:
            mark = f" {BEST_MARK}" if str(t["trial"]) == best else ""
            cells = [_fmt_value(t["params"].get(n)) for n in names]
            value = "failed" if t["value"] is None else f"{t['value']:.4f}"
            out.append(f"| {cell(t['trial'])}{mark} | {' | '.join(cells)} | {value} |")
        # The sweep's own study file (states: complete, pruned by ASHA, failed) when it is
        # beside results.json; else one rebuilt from the trials table (older sweeps).
        saved = (results["best"][fmt] or {}).get("study")
        study = P.load_study_file(run_dir / Path(saved).name) if saved else None
        study = study or P.study_from_trials(trials, space)
        history, importance, why = P.plot_optuna(study, fmt, metric, plots)
        out.append("")
        if history is not None:
            out += [_img(f"optimisation history {fmt}", history), ""]
        if importance is not None:
            out += [_img(f"parameter importances {fmt}", importance), ""]
        else:
            out += [f"_Parameter importances: {why}._", ""]
    return out


def write_report(run_dir: str | Path, best_key: str = BEST_KEY) -> Path:
    """`<run_dir>/report.md` and `<run_dir>/report/*.png` from a run or sweep folder's
    results.json (and its pretraining metrics / trials, when present). Returns report.md."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(
            f"'{run_dir}' is not a folder; pass the --out folder of `mfclr run` or a sweep folder"
        )
    if not (run_dir / "results.json").is_file():
        raise DataError(f"'{run_dir}' has no results.json; run `mfclr run` or `mfclr sweep` first")
    results = read_results(run_dir / "results.json")
    rows = [r for r in results["rows"] if isinstance(r, dict)]
    plots = run_dir / REPORT_DIR
    plots.mkdir(exist_ok=True)
    for old in plots.glob("*.png"):  # a plot that no longer applies must not linger
        old.unlink()
    # The facts of the run as a list; a sweep says which (a plain run needs no bullet of its own).
    parts = [f"# mfclr report: {cell(run_dir.resolve().name)}", ""]
    parts += [f"- sweep: `{cell(results['sweep'])}`"] if results.get("sweep") else []
    parts += [
        f"- {k}: {cell(results[k])}" for k in ("dataset", "test_tracks", "git_sha") if k in results
    ]
    parts += ["", "## Probe variants (test split)", "", results_table(rows, best_key=best_key), ""]
    best = sorted(best_indices(rows, best_key))
    if best:
        row = rows[best[0]]
        parts += [best_sentence(row, best_key), ""]
        parts += ["Accuracy / macro mAP (%) by variant and probe head:", ""]
        parts += [pivot_table(rows, best_key), ""]
        png = P.plot_variants([row_label(r) for r in rows], rows, best[0], plots / "variants.png")
        parts += [_img("variants", png), ""]
        names = list(results.get("label_names") or row.get("per_class_ap") or [])
        parts += _best_sections(rows, best[0], names, plots, best_key)
    parts += _gate_section(rows)
    parts += _pretrain_section(pretrain_curves(run_dir, results), plots)
    parts += _sweep_section(results, run_dir, plots)
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path
