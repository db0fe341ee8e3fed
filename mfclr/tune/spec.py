"""The sweep file: what a hyperparameter sweep trains, on what, with what budget, over what space.

A sweep file is validated completely when it is loaded, before any cluster work starts: an unknown
key, an impossible range, a search key that is not a config key, or a value the config rejects
raises `ConfigError` with one line naming the file, the key and the fix. No Ray, no torch here.

Defaults come from the one Config: `resources` sets `ray.*`, `search.metric` sets
`train.val_metric` and `search.eval_every` sets `train.eval_every`, each only when given.

    name: smoke                      # the sweep folder and every run/trial name derive from it
    preset: tiny                     # optional base preset, then `config:` (a file), then `set:`
    set: {train.batch_size: 16}      # dotted config overrides
    dataset: {kind: embedded}        # merged into data.probe (kind, root, ...)
    formats: [audio, spectrogram]    # one Optuna study per format
    budget: {trials: 2, epochs: 3, max_concurrent_trials: 1, grace_period: 1}
                                     # + scheduler: asha (default) | halving, reduction_factor
    resources: {workers: 2, cpus_per_worker: 1, gpus_per_worker: 0}   # -> ray.* config keys
                                     # + max_failures, custom_resources: {name: amount}
    search:
      metric: knn                    # train.val_metric (valid split): knn | probe
      space:
        temperature: {key: train.temperature, type: float, low: 0.05, high: 1.0, log: true}
        mask_size: {key: augment.spectrogram.freq_mask.size, type: int, low: 2, high: 16,
                    formats: [spectrogram]}
        probe_head: {key: train.val_head, type: choice, choices: [linear, mlp]}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mfclr.config import (
    DEFAULT_FORMATS,
    Config,
    check_format,
    load_config,
    parse_set_args,
    read_yaml,
    validation_message,
    without_budgets,
)
from mfclr.config.panel import resolve_panel
from mfclr.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# Sections of the sweep file itself; any other `--set` key goes to the base config's `set:`.
SWEEP_SECTIONS = (
    "name",
    "preset",
    "config",
    "set",
    "dataset",
    "formats",
    "budget",
    "resources",
    "search",
    "storage",
)
Scalar = str | int | float | bool
# The data keys a search may vary: a format's own input, not which tracks it sees.
FORMAT_INPUT_KEYS = ("data.sample_rate", "data.clip_seconds")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ParamSpec(_Strict):
    """One searched dimension: a float/int range (optionally log-scaled) or a list of choices."""

    key: str | None = None  # the dotted config key; defaults to the parameter's name
    type: Literal["float", "int", "choice"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Scalar] | None = None
    formats: list[str] | None = None  # searched only for these (None elsewhere)

    @field_validator("formats")
    @classmethod
    def _known(cls, formats: list[str] | None) -> list[str] | None:
        for name in formats or []:
            check_format(name, cross=True)
        return formats

    @model_validator(mode="after")
    def _coherent(self) -> ParamSpec:
        if self.type == "choice":
            if not self.choices:
                raise ValueError("a choice parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("a choice parameter takes 'choices', not low/high/log")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} parameter takes low/high, not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs both 'low' and 'high'")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scaled range needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("'step' and 'log' cannot be combined (Optuna rejects it)")
        if self.type == "int" and not (
            float(self.low).is_integer() and float(self.high).is_integer()
        ):
            raise ValueError(f"an int parameter needs whole low/high (got {self.low}, {self.high})")
        return self

    def probe_values(self) -> list[Any]:
        """The values the config must accept: both ends of a range, or every choice."""
        if self.type == "choice":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


class Budget(_Strict):
    trials: int = Field(ge=1)  # Optuna trials per format
    # Pretraining epochs of a trial that is not stopped early (ASHA's rungs count epochs).
    # A panel sweep may leave it out: each dataset then trains the config's budget (train.steps
    # or train.epochs, a format's own per_format budget, or a searched one), and the rungs count
    # datasets.
    epochs: int | None = Field(None, ge=1)
    # null: as many as the cluster's resources hold
    max_concurrent_trials: int | None = Field(1, ge=1)
    # asha: asynchronous (each rung decides from the results so far); halving: synchronous
    # successive halving (each rung waits for every trial; mfclr/tune/halving.py).
    scheduler: Literal["asha", "halving"] = "asha"
    # A trial runs at least grace_period epochs; rungs are grace_period * rf^k epochs.
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)

    @model_validator(mode="after")
    def _fits(self) -> Budget:
        if self.epochs is not None and self.grace_period > self.epochs:
            raise ValueError(
                f"budget.grace_period ({self.grace_period}) exceeds budget.epochs "
                f"({self.epochs}); lower it"
            )
        concurrent = self.max_concurrent_trials or self.trials
        if self.scheduler == "halving" and concurrent < self.trials:
            raise ValueError(
                f"budget.max_concurrent_trials ({self.max_concurrent_trials}) is below "
                f"budget.trials ({self.trials}) with scheduler 'halving': a trial at a rung "
                "waits, paused, for all the others, so the search must propose them all; set it "
                "to null (the cluster's resources bound how many train at once)"
            )
        return self


class Resources(_Strict):
    """Per trial; each key given sets `ray.<key>` (see mfclr/config/sections.py RayConfig)."""

    workers: int | None = Field(None, ge=1)
    cpus_per_worker: float | None = Field(None, gt=0)
    gpus_per_worker: float | None = Field(None, ge=0)
    max_failures: int | None = Field(None, ge=0)
    # Ray custom resources per worker, e.g. {gpu_box: 1}: trials run only on nodes started with
    # `ray start --resources '{"gpu_box": N}'` (checked by the config's ray.custom_resources).
    custom_resources: dict[str, float] | None = None


class Search(_Strict):
    seed: int = 0  # seeds Optuna's TPE sampler: the same file proposes the same trials
    metric: Literal["knn", "probe"] | None = None  # train.val_metric
    eval_every: int | None = Field(None, ge=1)  # train.eval_every (ASHA reads the metric)
    space: dict[str, ParamSpec] = Field(min_length=1)


class SweepSpec(_Strict):
    name: str
    preset: str | None = None
    config: str | None = None  # a config file, relative to the sweep file
    set: dict[str, Any] = {}
    dataset: dict[str, Any] | None = None
    # Instead of one dataset: a panel (a panel file, relative to the sweep file, with optional
    # `datasets: [names]`; or inline `datasets: {name: {set: {...}}}`). Each trial trains on
    # every dataset in turn; its metric is the mean of their validation metrics (mfclr/tune/
    # panel.py), and the final stage probes the best encoders on each dataset, pooled.
    panel: dict[str, Any] | None = None
    # `cross` = both encoders trained together (a track's two formats as the positive pair),
    # compared in the final table with the separately trained best encoders.
    formats: list[str] = Field(list(DEFAULT_FORMATS), min_length=1)
    budget: Budget
    resources: Resources = Resources()
    search: Search
    storage: str | None = None  # s3://bucket/prefix or a shared folder; default: the output folder

    @model_validator(mode="after")
    def _budget(self) -> SweepSpec:
        if self.panel is not None and self.dataset is not None:
            raise ValueError("set either dataset: or panel:, not both")
        if self.panel is None and self.budget.epochs is None:
            raise ValueError("budget.epochs is required (a panel: sweep may leave it out)")
        if self.panel is not None and (self.resources.workers or 1) > 1:
            raise ValueError("a panel: sweep trains each trial in its own process; set "
                             "resources.workers: 1")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _names(self) -> SweepSpec:
        for fmt in self.formats:
            check_format(fmt, cross=True)
        if not _NAME.match(self.name):
            raise ValueError(f"name '{self.name}' may hold only letters, digits, '-' and '_'")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats {self.formats} lists a format twice")
        for pname in self.search.space:
            if not _NAME.match(pname.replace(".", "_")):
                raise ValueError(
                    f"search.space name '{pname}' may hold only letters, digits, '.', '-' and '_'"
                )
        return self

    def param_keys(self) -> dict[str, str]:
        """Parameter name -> dotted config key."""
        return {n: p.key or n for n, p in self.search.space.items()}


def _flatten(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_overrides(spec: SweepSpec) -> dict[str, Any]:
    """The dotted overrides the sweep applies on top of preset and config file."""
    over = dict(spec.set)
    if spec.dataset is not None:
        over.update(_flatten(spec.dataset, "data.probe."))
    if spec.budget.epochs is not None:
        over["train.epochs"] = spec.budget.epochs
        over["train.steps"] = None  # a preset's step budget would override budget.epochs
    given = {"train.val_metric": spec.search.metric, "train.eval_every": spec.search.eval_every}
    given |= {f"ray.{k}": v for k, v in spec.resources.model_dump().items()}
    over.update({k: v for k, v in given.items() if v is not None})
    return over


def resolved(spec: SweepSpec, base: Config) -> SweepSpec:
    """The spec with the defaults it took from `base` written in (what sweep.yaml records)."""
    search = spec.search.model_copy(
        update={"metric": base.train.val_metric, "eval_every": base.train.eval_every}
    )
    resources = Resources(**base.ray.model_dump())
    return spec.model_copy(update={"search": search, "resources": resources})


def _apply_sweep_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """`--set budget.trials=1` edits the sweep file; `--set train.lr=...` its `set:` section."""
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in SWEEP_SECTIONS or head == "set":
            data.setdefault("set", {})
            if not isinstance(data["set"], dict):
                raise ConfigError("sweep key 'set' must be a mapping of dotted config keys")
            data["set"][rest if head == "set" else key] = value
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section of the sweep file")
        node[parts[-1]] = value


def validate_space(spec: SweepSpec, base: Config, where: str) -> None:
    """Every searched value must be a value the config accepts (unknown key, type, range)."""
    for pname, param in spec.search.space.items():
        key = param.key or pname
        for value in param.probe_values():
            try:
                base.with_overrides({key: value})
            except ConfigError as err:
                raise ConfigError(
                    f"{where}: search.space.{pname} ({key}={value!r}): {err}"
                ) from None
    keys = spec.param_keys().values()
    if not base.train.eval_every and spec.panel is None:  # a panel trial validates per dataset
        raise ConfigError(
            f"{where}: train.eval_every is 0, so no trial reports a validation metric; "
            "set search.eval_every (1 or more)"
        )
    if "train.val_head" in keys and base.train.val_metric != "probe":
        raise ConfigError(
            f"{where}: searching train.val_head has no effect with search.metric "
            "'knn'; set search.metric: probe or drop the parameter"
        )
    leaks = [k for k in keys if k.startswith("data.") and k not in FORMAT_INPUT_KEYS]
    if leaks:
        # The split and the dataset are fixed per sweep: a trial that searched them would
        # pretrain on tracks the final table tests on.
        raise ConfigError(
            f"{where}: '{leaks[0]}' decides which tracks are in which split (or the dataset "
            f"itself), so it cannot be searched; of data.* only {', '.join(FORMAT_INPUT_KEYS)} "
            "can (a format's own input)"
        )
    if any(k.startswith("ray.") for k in keys):
        # A trial's resources (and whether it trains in its own process) are fixed per study.
        raise ConfigError(
            f"{where}: ray.* keys are the sweep's resources, not search keys; "
            "set them under resources: instead"
        )
    for budget_key in ("train.epochs", "train.steps"):
        if budget_key in keys and (spec.panel is None or spec.budget.epochs is not None):
            # ASHA's rungs count epochs: trials of different lengths would be judged mid-way.
            raise ConfigError(
                f"{where}: {budget_key} is the budget, not a search key; set budget.epochs, "
                "or search it in a panel: sweep without budget.epochs (rungs count datasets)"
            )


def final_stage_config(spec: SweepSpec, base: Config) -> Config:
    """The config of the sweep's final fused probe: every head in probe.heads, and every head
    the search tried for its validation metric (train.val_head's choices), so the table
    compares each head the trials were selected with."""
    searched = [
        str(c)
        for name, p in spec.search.space.items()
        if (p.key or name) == "train.val_head"
        for c in p.choices or []
    ]
    heads = list(dict.fromkeys([*base.probe.heads, *searched]))
    return base if heads == base.probe.heads else base.with_overrides({"probe.heads": heads})


def _budget_epochs(base: Config) -> Config:
    """budget.epochs is every format's epochs in a sweep (ASHA's max_t, halving's rungs): a
    preset's per-format budget (per_format.<format>.train.epochs or .steps) does not apply.
    (A panel sweep without budget.epochs keeps them: its rungs count datasets.)"""
    per_format = without_budgets(base.per_format)
    if per_format == base.per_format:
        return base
    return base.with_overrides({"per_format": per_format})


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> tuple[SweepSpec, Config]:
    """Read and validate a sweep file; returns the spec (defaults resolved from the config, see
    `resolved`) and its base config (no trial params).

    `overrides` are `--set KEY=VALUE` strings: sweep keys (budget.trials, formats, ...) edit the
    sweep, any other key is a config override added to its `set:` section.
    """
    path = Path(path)
    where = f"sweep file '{path}'"
    data = read_yaml(path, "sweep file")
    if overrides:
        _apply_sweep_overrides(data, parse_set_args(overrides))
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        message = validation_message(err, key="key", where="allowed: see mfclr/tune/spec.py")
        raise ConfigError(f"{where}: {message}") from None
    config_path = None
    if spec.config:
        config_path = Path(spec.config)
        config_path = config_path if config_path.is_absolute() else path.parent / config_path
    try:
        base = load_config(config_path, spec.preset, config_overrides(spec))
        if spec.panel is None or spec.budget.epochs is not None:
            base = _budget_epochs(base)
        if spec.panel is not None:
            spec = spec.model_copy(update={"panel": resolve_panel(spec.panel, path, base)})
            n = len(spec.panel["datasets"])
            if spec.budget.grace_period > n:  # a panel's rungs count datasets
                raise ConfigError(f"budget.grace_period ({spec.budget.grace_period}) exceeds the "
                                  f"panel's {n} datasets; lower it")  # fmt: skip
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    validate_space(spec, base, where)
    return resolved(spec, base), base
