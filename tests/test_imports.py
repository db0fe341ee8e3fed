"""The dependency order of mfclr/ (DESIGN.md §2), enforced on the import statements of every
module (parsed with ast, function-level imports included): a module imports only from its own
layer or the layers below it; wandb only in tracking.py; Ray only in train/ray.py and tune/
(tune/spec.py excepted: the sweep file is validated without Ray); config without torch or Ray."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mfclr"

# Lowest first. A module belongs to the first layer whose prefix matches its dotted name.
LAYERS: list[tuple[str, ...]] = [
    ("mfclr.errors", "mfclr.progress", "mfclr.signals", "mfclr.malloc"),
    ("mfclr.io", "mfclr.locks"),
    ("mfclr.config",),
    ("mfclr.data", "mfclr.distributed", "mfclr.loss", "mfclr.heads", "mfclr.checkpoint"),
    ("mfclr.encoders",),
    ("mfclr.augment",),
    ("mfclr.formats",),
    ("mfclr.probe",),
    ("mfclr.api",),
    ("mfclr.tracking",),
    ("mfclr.report",),
    ("mfclr.stage",),
    ("mfclr.train",),
    ("mfclr.tune",),
    ("mfclr.run",),
    ("mfclr.cli", "mfclr.__main__", "mfclr"),
]
RAY_ALLOWED = (
    "mfclr.train.ray",
    "mfclr.tune.halving",
    "mfclr.tune.panel",
    "mfclr.tune.search",
    "mfclr.tune.study",
    "mfclr.tune.sweep",
    "mfclr.tune.trial",
)
WANDB_ALLOWED = ("mfclr.tracking",)
TORCH_FREE = (
    "mfclr.config", "mfclr.tune.spec", "mfclr.report.results", "mfclr.report.markdown",
    "mfclr.train.keys",
)  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """Every module an `import` / `from ... import` in `path` names (absolute imports only)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from mfclr import checkpoint` imports the module mfclr.checkpoint
            if node.module == "mfclr":
                names += [f"mfclr.{a.name}" for a in node.names]
    return names


def _layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS; add it")


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_from_a_layer_above_it(module: str) -> None:
    own = _layer(module)
    upward = [
        name
        for name in _imports(MODULES[module])
        if name.startswith("mfclr") and name != "mfclr" and _layer(name) > own
    ]
    assert not upward, f"{module} (layer {own}) imports from above: {upward}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_wandb_ray_and_torch_only_where_allowed(module: str) -> None:
    tops = {name.split(".")[0] for name in _imports(MODULES[module])}
    if "wandb" in tops:
        assert _under(module, WANDB_ALLOWED), f"{module} imports wandb"
    if "ray" in tops:
        assert _under(module, RAY_ALLOWED), f"{module} imports ray"
    if _under(module, TORCH_FREE):
        assert not tops & {"torch", "torchaudio", "ray"}, f"{module} imports {tops}"


def test_the_layers_cover_every_module_and_the_check_sees_imports() -> None:
    assert len(MODULES) > 50 and all(_layer(m) >= 0 for m in MODULES)
    # The parser sees function-level imports too (a guard against a vacuous test).
    assert "mfclr.report.results" in _imports(MODULES["mfclr.report.document"])
    assert _layer("mfclr.train.loop") > _layer("mfclr.probe.validate")
    assert _layer("mfclr.config") < _layer("mfclr.data.cache") < _layer("mfclr.tracking")


def test_a_trial_process_loads_no_torchvision_or_sklearn() -> None:
    """A Tune trial is a fresh process: what `mfclr.tune.trial` imports is paid by every sweep's
    first trial (benchmarks/ray_overhead.py). torchvision (~1.2 s) waits for a spectrogram
    encoder, scikit-learn (~0.8 s) for the final metrics."""
    import subprocess
    import sys

    code = (
        "import sys, mfclr.tune.trial as t; from mfclr.formats import build_encoder;"
        "from mfclr.config import build_config;"
        "build_encoder('audio', build_config({}));"
        "before = sorted(m for m in ('torchvision', 'sklearn') if m in sys.modules);"
        "build_encoder('spectrogram', build_config({}));"
        "print(before, 'torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"]
