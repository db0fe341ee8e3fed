"""classifier.pt: every fusion's fitted predictor survives a save and a load exactly (the same
probabilities as the table computed), the file loads with weights_only, unknown kinds and
versions are refused in one line, and the row a table saves is the one chosen on valid among
the rows with trained encoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mfclr import checkpoint as ckpt
from mfclr.config import load_config
from mfclr.errors import CheckpointError, ConfigError
from mfclr.formats.frozen import random_frozen
from mfclr.probe.bundle import (
    check_save_row,
    classifier_state,
    load_classifier_file,
    save_classifier,
)
from mfclr.probe.fusion import get_fusion
from mfclr.probe.variants import ProbeTable
from mfclr.stage import classifier_row
from tests.probe.test_probe_fusion import CFG, half_informative

LABELS = ["a", "b", "c", "d"]
FAST = CFG.model_copy(update={"max_epochs": 20, "patience": 5, "hidden_dim": 16,
                              "l2s": [1e-1, 1e-2]})  # fmt: skip


def _features() -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """half_informative's two formats under the names of two real encoders."""
    feats, labels = half_informative()
    return {"audio": feats["A"], "spectrogram": feats["B"]}, labels


def _state(result: Any, formats: list[str], head: str) -> dict[str, Any]:
    cfg = load_config(preset="tiny")
    encoders = {f: random_frozen(cfg, f) for f in formats}
    row = {"name": "fused", "head": head, "fusion": result.info["fusion"], "formats": formats,
           "encoders": "trained", "valid_accuracy": 0.5, "accuracy": 0.25}  # fmt: skip
    return classifier_state(
        row=row, predictor=result.predictor, encoders=encoders, label_names=LABELS,
        max_chunks=3, batch_size=16, provenance={"dataset": "x", "git_sha": None},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fusion", "head", "formats"),
    [
        ("concat", "linear", ["audio"]),  # a single-format row
        ("concat", "mlp", ["audio", "spectrogram"]),
        ("average", "linear", ["audio", "spectrogram"]),
        ("weighted", "linear", ["audio", "spectrogram"]),
        ("product", "mlp", ["audio", "spectrogram"]),
        ("gated", "linear", ["audio", "spectrogram"]),
        ("scaled", "linear", ["audio", "spectrogram"]),
    ],
)
def test_a_saved_row_predicts_exactly_as_the_table(
    fusion: str, head: str, formats: list[str], tmp_path: Path
) -> None:
    feats, labels = _features()
    sub = {f: feats[f] for f in formats}
    result = get_fusion(fusion)(sub, labels, head, FAST, 4)
    path = save_classifier(tmp_path / "classifier.pt", _state(result, formats, head))
    raw = torch.load(path, weights_only=True)  # tensors and plain values only
    assert raw["kind"] == "mfclr.classifier" and raw["version"] == 1
    saved = load_classifier_file(path)
    test = {f: sub[f]["test"] for f in formats}
    assert np.array_equal(saved.predictor.predict_proba(test), result.probs)
    assert saved.label_names == LABELS and saved.max_chunks == dict.fromkeys(formats, 3)
    assert saved.meta["row"]["fusion"] == fusion and saved.meta["test_accuracy"] == 0.25
    for f in formats:  # the encoders come back with their weights
        before = random_frozen(load_config(preset="tiny"), f).encoder.state_dict()
        after = saved.encoders[f].encoder.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)


def _refused(path: Path, state: Any, *needles: str) -> None:
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_classifier_file(path)
    assert "\n" not in str(info.value)
    for needle in needles:
        assert needle in str(info.value)


def test_unknown_kinds_versions_and_damaged_files_are_refused(tmp_path: Path) -> None:
    feats, labels = _features()
    result = get_fusion("weighted")(feats, labels, "linear", FAST, 4)
    good = _state(result, ["audio", "spectrogram"], "linear")
    path = tmp_path / "c.pt"
    _refused(path, {**good, "version": 2}, "version 2", "does not read (1 to 1)")
    _refused(path, {**good, "version": "1"}, "version '1'")
    _refused(path, {**good, "kind": "mfclr.regressor"}, "'mfclr.regressor'", "mfclr.classifier")
    _refused(path, {k: v for k, v in good.items() if k != "probes"}, "lacks 'probes'")
    _refused(path, {**good, "fusion": {**good["fusion"], "name": "median"}}, "'median'",
             "does not know")  # fmt: skip
    _refused(path, {**good, "label_names": ["a", "b"]}, "label names that disagree")
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_classifier_file(path)
    plain = ckpt.atomic_save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an mfclr checkpoint"):
        load_classifier_file(plain)


def test_a_row_to_save_is_checked_before_any_work() -> None:
    rows = [("audio", "linear", "trained"), ("random-init", "linear", "random-init"),
            ("mfcc", "linear", "mfcc")]  # fmt: skip
    check_save_row(None, rows)
    check_save_row("random-init/linear", rows)
    with pytest.raises(ConfigError, match="names no row of this table; rows: audio, random-init"):
        check_save_row("fused/linear", rows)
    with pytest.raises(ConfigError, match="MFCC row has no encoder"):
        check_save_row("mfcc/linear", rows)
    with pytest.raises(ConfigError, match="NAME/HEAD with HEAD one of probe.heads \\(linear\\)"):
        load_config(preset="tiny", overrides=["probe.heads=[linear]", "probe.save_row=fused/mlp"])


def _row(name: str, kind: str, valid: float, head: str = "linear") -> dict[str, Any]:
    return {"name": name, "head": head, "encoders": kind, "valid_accuracy": valid}


def test_the_saved_row_is_the_best_on_valid_with_trained_encoders() -> None:
    rows = [_row("audio", "trained", 0.5), _row("fused", "trained", 0.7),
            _row("cross-fused", "cross", 0.7), _row("random-init", "random-init", 0.9),
            _row("mfcc", "mfcc", 0.95), _row("fused", "trained", 0.7, "mlp")]  # fmt: skip
    fitted = {(r["name"], r["head"]): None for r in rows if r["encoders"] != "mfcc"}
    table = ProbeTable(rows, fitted=fitted)  # type: ignore[arg-type]
    assert classifier_row(table, None) == 1  # controls and MFCC never; ties: table order
    assert classifier_row(table, "random-init/linear") == 3  # named: a control too
    assert classifier_row(table, "fused/mlp") == 5
    only_controls = ProbeTable(rows[3:5], fitted={("random-init", "linear"): None})  # type: ignore[dict-item]
    assert classifier_row(only_controls, None) is None
