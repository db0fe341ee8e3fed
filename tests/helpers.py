"""Shared helpers for the pipeline-level tests: the tiny preset with caches under a tmp folder."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from mfclr.cli import main
from mfclr.config import Config, load_config


def tiny_config(cache: Path, *overrides: str) -> Config:
    return load_config(preset="tiny", overrides=[f"data.cache_dir={cache}", *overrides])


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run `mfclr argv...` in-process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def probe_test_files(cfg: Config) -> tuple[list[Path], np.ndarray]:
    """The probe dataset's test tracks as audio files, in split order, and their labels (a
    dataset whose track ids are paths below its root: embedded, folder)."""
    from mfclr.data import load_dataset

    data = load_dataset(cfg.data, "probe", progress=False)
    split = data.splits["test"]
    return [Path(data.stats["root"]) / t for t in split.track_ids], split.labels


def predict_json(model: Path, paths: list[Path], out: Path, *flags: str) -> dict[str, Any]:
    """`mfclr predict --model MODEL PATHS... --out OUT.json` in-process; its JSON."""
    code, _, err = run_cli("predict", "--model", str(model), *map(str, paths), "--out", str(out),
                           "--quiet", *flags)  # fmt: skip
    assert code == 0, err
    return json.loads(out.read_text())


def check_classifier_reproduces_its_row(run: Path, cfg: Config, tmp: Path) -> dict[str, Any]:
    """`mfclr predict` with RUN/classifier.pt on the test split gives the saved row's results
    track by track: its predicted labels (the confusion matrix), `test_correct`, and, with the
    probe's batching, probabilities within 1e-6 of the probe's own on the saved embeddings."""
    from mfclr.api import load_classifier
    from mfclr.probe.embed import load_embeddings
    from mfclr.probe.sets import embedding_file

    results = json.loads((run / "results.json").read_text())
    row = next(r for r in results["rows"]
               if f"{r['name']}/{r['head']}" == results["classifier_row"])  # fmt: skip
    files, labels = probe_test_files(cfg)
    preds = predict_json(run / "classifier.pt", files, tmp / "preds.json")
    assert [p["path"] for p in preds["predictions"]] == [str(f) for f in files]
    assert preds["skipped"] == [] and preds["model"]["row"]["name"] == row["name"]
    names = preds["label_names"]
    probs = np.array([[p["probabilities"][n] for n in names] for p in preds["predictions"]])
    predicted = probs.argmax(axis=1)
    assert [p["top"][0]["label"] for p in preds["predictions"]] == [names[i] for i in predicted]
    assert (predicted == labels).astype(int).tolist() == row["test_correct"]
    confusion = np.zeros((len(names), len(names)), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    assert confusion.tolist() == row["confusion_matrix"]
    saved = load_classifier(run / "classifier.pt").saved
    feats = {f: load_embeddings(run / "embeddings" / embedding_file(row["encoders"], f))
             for f in saved.predictor.formats}  # fmt: skip
    probe = saved.predictor.predict_proba({f: e.feats["test"] for f, e in feats.items()})
    np.testing.assert_allclose(probs, probe, rtol=0, atol=1e-6)
    return row
