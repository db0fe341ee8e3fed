"""`mfclr report DIR`: report.md + readable PNGs from hand-made run and sweep folders; the numbers
in report.md are those of results.json; missing inputs are one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
import yaml
from PIL import Image

from mfclr.probe.metrics import classification_metrics
from mfclr.report.markdown import BEST_MARK
from mfclr.report.plots import study_from_trials
from mfclr.report.results import read_results, write_results
from tests.helpers import run_cli

NAMES = ["rock", "jazz", "folk"]
RUN_PNGS = {"variants", "confusion_matrix", "per_class_ap", "pretrain_loss"}


def _probs(y: np.ndarray, skill: float, seed: int) -> np.ndarray:
    """(n, 3) probabilities that put `skill` extra mass on the true class."""
    rng = np.random.default_rng(seed)
    p = np.clip(rng.random((len(y), 3)) + skill * np.eye(3)[y], 1e-3, None)
    return p / p.sum(1, keepdims=True)


def _rows() -> list[dict[str, Any]]:
    """Variants as evaluate() writes them: single formats, fusions, the random-init control."""
    y = np.arange(30) % 3
    variants = [
        ("audio", "none", ["audio"], "trained", 0.2),
        ("spectrogram", "none", ["spectrogram"], "trained", 0.4),
        ("fused", "concat", ["audio", "spectrogram"], "trained", 2.0),
        ("fused-gated", "gated", ["audio", "spectrogram"], "trained", 0.6),
        ("random-init", "concat", ["audio", "spectrogram"], "random-init", 0.1),
    ]
    rows = []
    for h, head in enumerate(("linear", "mlp")):
        for i, (name, fusion, fmts, enc, skill) in enumerate(variants):
            info: dict[str, Any] = {"fusion": fusion, "formats": fmts, "dim": 512 * len(fmts)}
            if fusion == "gated":
                info["gate_weights"] = {"audio": 0.3 + 0.1 * h, "spectrogram": 0.7 - 0.1 * h}
            # Only fused/linear is always right (skill 2 > any noise gap): a unique best.
            metrics = classification_metrics(y, _probs(y, skill - 1.5 * h, 10 * h + i), NAMES)
            # Valid tracks the same skill: the row chosen on valid is fused/linear too.
            rows.append({"name": name, "fusion": fusion, "head": head, "formats": fmts,
                         "encoders": enc, "valid_accuracy": metrics["accuracy"], **metrics,
                         "probe_info": info})  # fmt: skip
    return rows


def _metrics_lines(fmt_offset: float, epochs: int = 6) -> str:
    lines = []
    for e in range(1, epochs + 1):
        m: dict[str, Any] = {"epoch": e, "loss": 4.0 - 0.3 * e + fmt_offset, "lr": 1e-3}
        if e % 2 == 0:
            m["val_accuracy"] = 0.3 + 0.05 * e
        lines.append(json.dumps(m))
    return "\n".join(lines) + "\n"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    extra = {"dataset": "embedded", "test_tracks": 30, "label_names": NAMES, "git_sha": "abc123"}
    write_results(out, _rows(), extra)
    for k, fmt in enumerate(("audio", "spectrogram")):
        (out / "pretrain" / fmt).mkdir(parents=True)
        (out / "pretrain" / fmt / "metrics.jsonl").write_text(_metrics_lines(0.2 * k))
    return out


def _check_png(path: Path) -> None:
    assert path.stat().st_size > 5_000, path
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= 300, (path, im.size)
        im.verify()


def _section(md: str, title: str) -> str:
    """The body of the `## title...` section of report.md."""
    for part in md.split("\n## ")[1:]:
        if part.startswith(title):
            return part
    raise AssertionError(f"no section '{title}' in report.md")


def _table(text: str) -> list[list[str]]:
    """The first markdown table in text: its rows (header included) as stripped cells."""
    lines, started = [], False
    for ln in text.splitlines():
        if ln.startswith("|"):
            started = True
            if "---" not in ln:
                lines.append([c.strip().strip("*").strip() for c in ln.strip("|").split("|")])
        elif started:
            break
    return lines


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _images(md: str) -> set[str]:
    return {ln.split("](")[1].rstrip(")") for ln in md.splitlines() if ln.startswith("![")}


def test_run_report_files_and_numbers_match_results_json(run_dir: Path) -> None:
    code, out, err = run_cli("report", str(run_dir), "--quiet")
    assert code == 0, err
    assert str(run_dir / "report.md") in out
    md = (run_dir / "report.md").read_text()
    pngs = {p.stem for p in (run_dir / "report").glob("*.png")}
    assert pngs == RUN_PNGS
    for p in (run_dir / "report").glob("*.png"):
        _check_png(p)
    assert _images(md) == {f"report/{p}.png" for p in RUN_PNGS}  # every plot linked, none dangling

    data = read_results(run_dir / "results.json")
    rows = data["rows"]
    best_acc = max(r["accuracy"] for r in rows)
    assert [r["accuracy"] for r in rows].count(best_acc) == 1
    table = _table(_section(md, "Probe variants"))
    assert table[0][:3] == ["name", "fusion", "head"] and len(table) == len(rows) + 1
    for cells, r in zip(table[1:], rows, strict=True):
        is_best = r["accuracy"] == best_acc
        assert cells[0] == r["name"] + (f" {BEST_MARK}" if is_best else "")
        assert cells[2] == r["head"]
        assert cells[4:7] == [_pct(r["valid_accuracy"]), _pct(r["accuracy"]), _pct(r["macro_map"])]
    best = next(r for r in rows if r["accuracy"] == best_acc)
    assert (best["name"], best["head"]) == ("fused", "linear")  # the most skilled variant
    assert "chosen on valid accuracy: **fused · linear**" in md

    # The variant x head pivot holds the same numbers, only the best cell starred.
    pivot = md.split("by variant and probe head:")[1]
    piv = {c[0]: c[1:] for c in _table(pivot)[1:]}
    for r in rows:
        cell = piv[r["name"]][["linear", "mlp"].index(r["head"])]
        want = f"{_pct(r['accuracy'])} / {_pct(r['macro_map'])}"
        assert cell == (f"{want} {BEST_MARK}" if r is best else want)

    cm = _table(_section(md, "Confusion matrix: fused · linear"))
    assert cm[0][1:4] == NAMES
    assert [[int(v) for v in c[1:4]] for c in cm[1:]] == best["confusion_matrix"]

    ap = _table(_section(md, "Per-class AP"))
    assert ap[0][1:] == ["fused · linear AP (%)", "random-init · linear AP (%)"]
    control = next(r for r in rows if r["name"] == "random-init" and r["head"] == "linear")
    for c in ap[1:]:
        assert c[1:] == [_pct(best["per_class_ap"][c[0]]), _pct(control["per_class_ap"][c[0]])]

    gates = {c[0]: c[1:] for c in _table(_section(md, "Gated fusion"))[1:]}
    assert gates["fused-gated · linear"] == ["0.300", "0.700"]

    pre = {c[0]: c[1:] for c in _table(_section(md, "Pretraining"))[1:]}
    assert pre["audio"] == ["6", "3.7000", "2.2000", "0.600"]
    assert pre["spectrogram"][2] == "2.4000"


def test_report_again_drops_plots_that_no_longer_apply(run_dir: Path) -> None:
    assert run_cli("report", str(run_dir))[0] == 0
    for f in (run_dir / "pretrain").glob("*/metrics.jsonl"):
        f.unlink()
    assert run_cli("report", str(run_dir))[0] == 0
    assert {p.stem for p in (run_dir / "report").glob("*.png")} == RUN_PNGS - {"pretrain_loss"}
    assert "## Pretraining" not in (run_dir / "report.md").read_text()


# ----------------------------------------------------------------------------- sweeps

SPACE = {
    "temperature": {"key": "train.temperature", "type": "float", "low": 0.05, "high": 1.0,
                    "log": True, "step": None, "choices": None, "formats": None},
    "mask_size": {"key": "augment.spectrogram.freq_mask.size", "type": "int", "low": 2.0,
                  "high": 12.0, "log": False, "step": None, "choices": None,
                  "formats": ["spectrogram"]},
    "probe_head": {"key": "train.val_head", "type": "choice", "low": None, "high": None,
                   "log": False, "step": None, "choices": ["linear", "mlp"], "formats": None},
}  # fmt: skip


def _trials(fmt: str) -> list[dict[str, Any]]:
    """Tune's trial rows as tune.py stores them: config (with format, None = not searched)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(1, 9):
        t = float(np.exp(rng.uniform(np.log(0.05), 0.0)))
        mask = int(rng.integers(2, 13)) if fmt == "spectrogram" else None
        config = {"temperature": t, "probe_head": ["linear", "mlp"][i % 2], "format": fmt,
                  "mask_size": mask}  # fmt: skip
        value = None if i == 4 else round(0.9 - abs(math.log(t / 0.2)) / 5, 4)  # trial 4 failed
        rows.append({"trial": f"{fmt}_{i:03d}", "config": config, "val_accuracy": value,
                     "epochs_done": 3, "error": "boom" if i == 4 else None})  # fmt: skip
    return rows


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    out = tmp_path / "smoke"
    best = {}
    for fmt in ("audio", "spectrogram"):
        trials = _trials(fmt)
        top = max((t for t in trials if t["val_accuracy"] is not None),
                  key=lambda t: t["val_accuracy"])  # fmt: skip
        best[fmt] = {"trial": top["trial"], "val_accuracy": top["val_accuracy"], "trials": trials}
        log = out / "tune" / fmt / top["trial"] / "result.json"
        log.parent.mkdir(parents=True)
        log.write_text(_metrics_lines(0.0, epochs=4))
    extra = {"sweep": "smoke", "dataset": "embedded", "test_tracks": 30, "label_names": NAMES,
             "validation_metric": "val_accuracy", "best": best}  # fmt: skip
    write_results(out, _rows()[:5], extra)
    (out / "sweep.yaml").write_text(yaml.safe_dump({"name": "smoke", "search": {"space": SPACE}}))
    return out


def test_sweep_report_has_optuna_plots_and_trial_tables(sweep_dir: Path) -> None:
    style = dict(matplotlib.rcParams)
    code, out, err = run_cli("report", str(sweep_dir))
    assert code == 0, err
    assert matplotlib.rcParams == style  # Optuna's ggplot style did not leak out
    md = (sweep_dir / "report.md").read_text()
    plots = sweep_dir / "report"
    for fmt in ("audio", "spectrogram"):
        for kind in ("history", "importance"):
            _check_png(plots / f"optuna_{kind}_{fmt}.png")
            assert f"report/optuna_{kind}_{fmt}.png" in _images(md)
    _check_png(plots / "pretrain_loss.png")
    data = read_results(sweep_dir / "results.json")
    for fmt in ("audio", "spectrogram"):
        table = _table(md.split(f"### {fmt}:")[1])
        trials = data["best"][fmt]["trials"]
        assert len(table) == len(trials) + 1
        header = table[0]
        assert header[0] == "trial" and header[-1] == "val_accuracy"
        assert ("mask_size" in header) == (fmt == "spectrogram")  # None = not searched
        for cells, t in zip(table[1:], trials, strict=True):
            best = t["trial"] == data["best"][fmt]["trial"]
            assert cells[0] == t["trial"] + (f" {BEST_MARK}" if best else "")
            v = t["val_accuracy"]
            assert cells[-1] == ("failed" if v is None else f"{v:.4f}")
            assert cells[header.index("temperature")] == f"{t['config']['temperature']:.4g}"


def test_study_from_trials_uses_the_sweep_space_and_keeps_failures() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState

    trials = [{"trial": t["trial"], "params": t["config"], "value": t["val_accuracy"]}
              for t in _trials("spectrogram")]  # fmt: skip
    for t in trials:
        t["params"] = {k: v for k, v in t["params"].items() if k != "format"}
    study = study_from_trials(trials, SPACE)
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 1
    done = study.trials[0]
    assert done.distributions["temperature"] == FloatDistribution(0.05, 1.0, log=True)
    assert done.distributions["mask_size"] == IntDistribution(2, 12)
    assert isinstance(done.distributions["probe_head"], CategoricalDistribution)
    assert study.best_value == max(t["value"] for t in trials if t["value"] is not None)
    # Without the sweep file the ranges are inferred from the values themselves.
    inferred = study_from_trials(trials).trials[0].distributions["temperature"]
    temps = [t["params"]["temperature"] for t in trials]
    assert (inferred.low, inferred.high, inferred.log) == (min(temps), max(temps), False)


def test_missing_inputs_are_one_line_errors(tmp_path: Path) -> None:
    code, out, err = run_cli("report", str(tmp_path))
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert f"'{tmp_path}' has no results.json; run `mfclr run` or `mfclr sweep` first" in err
    code, _, err = run_cli("report", str(tmp_path / "nope"))
    assert code == 2 and err.strip().count("\n") == 0 and "is not a folder" in err
    (tmp_path / "results.json").write_text("{")
    code, _, err = run_cli("report", str(tmp_path))
    assert code == 2 and "not valid JSON" in err


def _facecolour(bar_container: Any) -> tuple[float, ...]:
    return tuple(bar_container.patches[0].get_facecolor())


@pytest.mark.parametrize("best_is_control", [False, True])
def test_random_init_is_grey_and_pretrained_blue_in_every_plot(best_is_control: bool) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from mfclr.report import plots as P

    rows = _rows()
    control = [i for i, r in enumerate(rows) if r["encoders"] == "random-init"]
    best = control[0] if best_is_control else 2
    fig, ax = plt.subplots()
    bars = P.draw_variants(ax, [r["name"] for r in rows], rows, best)
    plt.close(fig)
    grey = {to_rgba(P.CONTROL_COLOUR), to_rgba(P.BEST_CONTROL_COLOUR)}
    blue = {to_rgba(P.BEST_COLOUR), to_rgba(P.OTHER_COLOUR)}
    for i, pair in enumerate(bars):
        colours = {_facecolour(b) for b in pair}
        assert colours <= (grey if i in control else blue), (rows[i]["name"], colours)
    same_kind = control[1] if best_is_control else 0  # another control / pretrained row
    assert _facecolour(bars[best][0]) != _facecolour(bars[same_kind][0])  # the best is darker
    assert "grey = random-init" in ax.get_title() and "blue = pretrained" in ax.get_title()

    series = {
        "fused · linear": rows[2]["per_class_ap"],
        "random-init · linear": rows[4]["per_class_ap"],
    }
    for order in (list(series), list(series)[::-1]):  # whichever is drawn first
        fig, ax = plt.subplots()
        drawn = P.draw_per_class_ap(ax, {k: series[k] for k in order}, ["random-init · linear"])
        plt.close(fig)
        by_label = dict(zip(order, map(_facecolour, drawn), strict=True))
        assert by_label["random-init · linear"] in grey and by_label["fused · linear"] in blue


def test_report_opens_with_facts_not_a_stray_bullet(run_dir: Path) -> None:
    code, _, err = run_cli("report", str(run_dir), "--quiet")
    assert code == 0, err
    bullets = [ln for ln in (run_dir / "report.md").read_text().splitlines() if ln.startswith("- ")]
    assert bullets[0].startswith("- dataset: ")
    assert all(": " in ln for ln in bullets[:3])


def test_sweep_report_reads_the_study_file_when_there_is_one(
    sweep_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    from mfclr.report import document
    from mfclr.report import plots as P

    # The audio study as the sweep writes it: two of its trials were stopped early by ASHA.
    trials = [{"trial": t["trial"], "value": t["val_accuracy"],
               "params": {k: v for k, v in t["config"].items() if k != "format"}}
              for t in _trials("audio")]  # fmt: skip
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "study-audio.log")))
    saved = optuna.create_study(study_name="smoke-audio", storage=storage, direction="maximize")
    for i, t in enumerate(study_from_trials(trials, SPACE).trials):
        if i in (1, 2):
            t.state = TrialState.PRUNED
        saved.add_trial(t)
    data = read_results(sweep_dir / "results.json")
    data["best"]["audio"]["study"] = "/elsewhere/smoke/study-audio.log"  # the folder was moved
    rows = data.pop("rows")
    write_results(sweep_dir, rows, data)
    seen = {}
    real = P.plot_optuna

    def spy(study: Any, fmt: str, *args: Any) -> Any:
        seen[fmt] = study
        return real(study, fmt, *args)

    monkeypatch.setattr(P, "plot_optuna", spy)
    document.write_report(sweep_dir)
    assert [t.state for t in seen["audio"].trials].count(TrialState.PRUNED) == 2
    assert TrialState.PRUNED not in [t.state for t in seen["spectrogram"].trials]  # no file
    assert (sweep_dir / "report" / "optuna_history_audio.png").is_file()
