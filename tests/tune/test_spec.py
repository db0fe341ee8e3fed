"""Sweep files are validated when loaded: every shipped file loads, and each kind of mistake is
a one-line ConfigError naming the file and the key. No Ray is started here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mfclr.errors import ConfigError
from mfclr.tune.spec import load_sweep

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


def _smoke() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_sweeps_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real-music panel is not built here (never in CI): its folders only need to exist.
    for name in ("style-s7", "shared-s7", "style-s8", "shared-s8"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("SCORES", str(tmp_path))
    shipped = {
        "smoke",
        "paper_table1",
        "paper_table2",
        "gtzan",
        "gpu_check",
        "recipe_panel",
        "recipe_panel_spectrogram",
    }
    assert {p.stem for p in SWEEPS} == shipped
    for path in SWEEPS:
        spec, base = load_sweep(path)
        assert spec.name == path.stem
        for fmt in spec.formats:  # the budget is every format's, whatever a preset's per_format
            if spec.budget.epochs is not None:  # (a panel sweep may keep the config's budget)
                assert base.for_format(fmt).train.epochs == spec.budget.epochs
        assert base.train.val_metric == spec.search.metric


def test_the_budget_overrides_a_per_format_epoch_count_but_not_its_other_keys() -> None:
    over = ["per_format.audio.train.epochs=9", "per_format.audio.train.lr=0.002"]
    spec, base = load_sweep(ROOT / "sweeps" / "smoke.yaml", over)
    audio = base.for_format("audio")
    assert audio.train.epochs == spec.budget.epochs and audio.train.lr == 0.002


def test_smoke_sweep_is_small_and_searches_the_issue_space() -> None:
    spec, base = load_sweep(ROOT / "sweeps" / "smoke.yaml")
    assert base.data.probe.kind == "embedded" and base.data.sample_rate == 8000
    assert spec.formats == ["audio", "spectrogram"] and spec.budget.trials <= 2
    keys = spec.param_keys()
    assert {
        "train.temperature",
        "train.weight_decay",
        "train.val_head",
        "augment.spectrogram.freq_mask.size",
        "model.projector",
    } <= set(keys.values())
    assert spec.search.space["mask_size"].formats == ["spectrogram"]


def test_defaults_come_from_the_one_config(tmp_path: Path) -> None:
    from mfclr.config import Config, load_config

    data = _smoke()
    data.pop("resources")
    data["search"].pop("metric")
    data["search"]["space"].pop("probe_head")  # searching val_head needs the probe metric
    spec, base = load_sweep(_write(tmp_path, data))
    default, tiny = Config(), load_config(None, "tiny")  # smoke.yaml builds on the tiny preset
    # Nothing re-declared: the config's values, recorded in the spec (and so in sweep.yaml).
    assert base.train.val_metric == tiny.train.val_metric == spec.search.metric == "knn"
    assert base.ray == default.ray and spec.resources.model_dump() == default.ray.model_dump()
    assert base.train.eval_every == spec.search.eval_every == 1  # the sweep file's
    # Given keys set the config; a config override reaches the spec the same way.
    data["resources"] = {"workers": 2, "gpus_per_worker": 0}
    data["search"].pop("eval_every")
    spec, base = load_sweep(_write(tmp_path, data), ["train.eval_every=3"])
    assert (base.ray.workers, base.ray.gpus_per_worker, base.ray.cpus_per_worker) == (2, 0, 1.0)
    assert spec.resources.workers == 2 and spec.search.eval_every == base.train.eval_every == 3
    # The tiny preset validates never (eval_every 0): a sweep must then say how often.
    assert tiny.train.eval_every == 0
    with pytest.raises(ConfigError, match="train.eval_every is 0"):
        load_sweep(_write(tmp_path, data))


def test_custom_resources_place_every_worker(tmp_path: Path) -> None:
    from mfclr.train.ray import worker_resources

    data = _smoke()
    data["resources"]["custom_resources"] = {"victim": 1}
    spec, base = load_sweep(_write(tmp_path, data))
    assert base.ray.custom_resources == spec.resources.custom_resources == {"victim": 1.0}
    # A one-worker trial asks for them itself; a Ray Train run's every worker asks for them.
    assert worker_resources(base, gpu=False) == {"CPU": 1.0, "victim": 1.0}
    assert load_sweep(ROOT / "sweeps" / "smoke.yaml")[1].ray.custom_resources == {}


def test_overrides_edit_the_sweep_or_its_config() -> None:
    spec, base = load_sweep(
        ROOT / "sweeps" / "smoke.yaml",
        ["budget.trials=1", "formats=[audio]", "train.batch_size=8", "data.cache_dir=/tmp/x"],
    )
    assert spec.budget.trials == 1 and spec.formats == ["audio"]
    assert base.train.batch_size == 8 and base.data.cache_dir == "/tmp/x"


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split("/")
    node = data
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("where", "value", "needle"),
    [
        ("budget/trails", 3, "unknown key 'budget.trails'"),
        ("searchh", {}, "unknown key 'searchh'"),
        ("budget/trials", 0, "budget.trials"),
        ("budget/grace_period", 9, "exceeds budget.epochs"),
        ("search/space/temperature/low", 2.0, "must be below high"),
        ("search/space/weight_decay/low", 0.0, "log-scaled range needs low > 0"),
        ("search/space/mask_size/low", 1.5, "needs whole low/high"),
        ("search/space/probe_head/choices", [], "non-empty 'choices'"),
        ("search/space/temperature/key", "train.temprature", "unknown config key"),
        ("search/space/mask_size/high", 500, "larger than the mel axis"),
        ("search/space/probe_head/choices", ["linear", "svm"], "train.val_head"),
        ("search/space/projector/choices", ["mlp", "deep"], "model.projector"),
        (
            "search/space/probe_head",
            {"key": "ray.workers", "type": "choice", "choices": [1, 2]},
            "set them under resources:",
        ),
        (
            "search/space/probe_head",
            {"key": "train.steps", "type": "choice", "choices": [100, 200]},
            "train.steps is the budget",
        ),
        ("search/metric", "knn", "has no effect"),
        ("search/space/temperature/formats", ["video"], "search.space.temperature.formats"),
        ("formats", ["audio", "audio"], "lists a format twice"),
        ("name", "bad name!", "may hold only"),
        ("budget/epochs", _DELETE, "budget.epochs is required"),
        ("set", {"train.lr": "fast"}, "train.lr"),
        ("dataset", {"kind": "gtzan"}, "needs a root folder"),
        ("resources/workers", 1.5, "resources.workers"),
        ("resources/custom_resources", {"GPU": 1}, "'GPU' is not a custom resource"),
        ("resources/custom_resources", {"victim": 1.5}, "a fraction in (0, 1] or a whole"),
        ("resources/custom_resources", {"victim": 0}, "'victim': 0.0 is not a valid amount"),
        ("budget/scheduler", "hyperband", "budget.scheduler"),
        # Smoke's max_concurrent_trials 1 < its 2 trials: a paused rung would wait forever.
        ("budget/scheduler", "halving", "the search must propose them all"),
    ],
)
def test_mistakes_are_one_line_errors(tmp_path: Path, where: str, value: Any, needle: str) -> None:
    path = _write(tmp_path, _set(_smoke(), where, value))
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    message = str(err.value)
    assert needle in message and "\n" not in message
    assert str(path) in message


def test_a_parameter_of_an_untrained_format_is_harmless(tmp_path: Path) -> None:
    data = _smoke()
    data["formats"] = ["audio"]  # mask_size (spectrogram only) then simply never applies
    spec, _ = load_sweep(_write(tmp_path, data))
    assert spec.formats == ["audio"] and "mask_size" in spec.search.space


def test_a_missing_file_and_bad_yaml_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sweep(bad)


def test_cli_check_validates_without_ray(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "mfclr", "sweep", "sweeps/smoke.yaml", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and "is valid" in ok.stdout
    path = _write(tmp_path, _set(_smoke(), "budget/trails", 3))
    bad = subprocess.run(
        [sys.executable, "-m", "mfclr", "sweep", str(path), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "unknown key 'budget.trails'" in bad.stderr


@pytest.mark.parametrize(
    ("trials", "epochs", "grace", "rf", "rungs", "planned"),
    [
        (16, 6, 1, 3, [1, 3, 6], 16 + 6 * 2 + 2 * 3),
        (16, 6, 1, 4, [1, 4, 6], 16 + 4 * 3 + 1 * 2),
        (16, 6, 2, 3, [2, 6], 16 * 2 + 6 * 4),
        (4, 3, 3, 2, [3], 12),  # grace = epochs: no early stopping
    ],
)
def test_halving_rungs_and_its_fixed_epoch_budget(
    trials: int, epochs: int, grace: int, rf: int, rungs: list[int], planned: int
) -> None:
    from mfclr.tune.halving import planned_epochs
    from mfclr.tune.halving import rungs as halving_rungs

    assert halving_rungs(epochs, grace, rf) == rungs
    assert planned_epochs(trials, epochs, grace, rf) == planned


def test_halving_needs_the_whole_study_proposable(tmp_path: Path) -> None:
    data = _smoke()
    data["budget"] |= {"scheduler": "halving", "max_concurrent_trials": None}
    spec, _ = load_sweep(_write(tmp_path, data))
    assert spec.budget.scheduler == "halving" and spec.budget.max_concurrent_trials is None


def _panel_sweep(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    data = _smoke()
    data.pop("dataset")
    data["budget"] = {"trials": 2, "grace_period": 1, "reduction_factor": 2}
    data["panel"] = {
        "datasets": {
            "a": {"set": {"data.probe.embedded.seed": 0}},
            "b": {"set": {"data.probe.embedded.seed": 1}, "pooled": False},
        }
    }
    data["search"]["space"]["steps"] = {"key": "train.steps", "type": "choice", "choices": [4, 8]}
    return {**data, **extra}


def test_a_panel_sweep_searches_the_budget_and_keeps_per_format_budgets(tmp_path: Path) -> None:
    data = _panel_sweep(tmp_path)
    data["set"] = {"per_format.audio.train.steps": 6}
    spec, base = load_sweep(_write(tmp_path, data))
    assert list(spec.panel["datasets"]) == ["a", "b"]
    assert spec.panel["datasets"]["b"] == {"pooled": False, "set": {"data.probe.embedded.seed": 1}}
    assert base.per_format["audio"]["train.steps"] == 6  # not dropped: rungs count datasets
    assert spec.budget.epochs is None


def test_a_panel_file_is_read_relative_to_the_sweep_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump(
            {"datasets": {"x": {"set": {"data.probe.embedded.seed": 3}}, "y": {"set": {}}}}
        )
    )
    data = _panel_sweep(tmp_path)
    data["panel"] = {"file": "p.yaml", "datasets": ["y"]}
    spec, _ = load_sweep(_write(tmp_path, data))
    assert list(spec.panel["datasets"]) == ["y"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"dataset": {"kind": "embedded"}}, "either dataset: or panel:"),
        ({"budget": {"trials": 2, "grace_period": 3}}, "exceeds the panel's 2 datasets"),
        ({"panel": {"datasets": {"a": {"set": {"train.lr": -1}}}}}, "panel dataset 'a'"),
        ({"panel": {"file": "nope.yaml"}}, "does not exist"),
        ({"resources": {"workers": 2}}, "resources.workers: 1"),
    ],
)
def test_panel_mistakes_are_one_line_errors(tmp_path: Path, change: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_sweep(_write(tmp_path, _panel_sweep(tmp_path, **change)))


def test_the_budget_is_searchable_only_where_rungs_count_datasets(tmp_path: Path) -> None:
    data = _smoke()
    data["search"]["space"]["steps"] = {"key": "train.steps", "type": "choice", "choices": [4, 8]}
    with pytest.raises(ConfigError, match="rungs count datasets"):
        load_sweep(_write(tmp_path, data))
