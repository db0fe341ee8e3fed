"""Like-for-like controls: every random-init control is built from its encoder's own
architecture, frontend and seed, whatever the probe's config says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mfclr.formats.frozen import load_frozen
from mfclr.probe.embed import load_embeddings
from mfclr.probe.sets import with_controls
from mfclr.train.local import pretrain_local
from tests.helpers import run_cli, tiny_config

NARROW = "[16, 16, 16, 32, 32, 32, 32, 64, 64, 256]"  # a 256-d SampleCNN (the tiny preset: 512)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("controls")
    cfg = tiny_config(tiny_cache, "train.epochs=1", "mel.n_mels=40", "train.seed=3",
                      f"model.samplecnn.channels={NARROW}")  # fmt: skip
    paths = {
        f: pretrain_local(cfg, f, tmp / f, progress=False)[f] for f in ("audio", "spectrogram")
    }
    return {"tmp": tmp, "cache": tiny_cache, **paths}


def test_a_control_has_its_encoders_frontend_architecture_and_seed(
    encoders: dict[str, Path],
) -> None:
    frozen = {f: load_frozen(encoders[f], f) for f in ("audio", "spectrogram")}
    sets, control_of = with_controls({"trained": frozen})
    controls = sets[control_of["trained"]]
    assert controls["spectrogram"].frontend_spec["kwargs"]["n_mels"] == 40
    assert controls["audio"].encoder.num_features == 256
    assert controls["audio"].seed == 3 and controls["audio"].source == "random-init"


def test_the_probe_pairs_each_encoder_with_its_own_control_not_the_configs(
    encoders: dict[str, Path],
) -> None:
    out = encoders["tmp"] / "probe"
    code, _, err = run_cli("probe", "--encoder", f"audio={encoders['audio']}", "--encoder",
                           f"spectrogram={encoders['spectrogram']}", "--out", str(out),
                           "--preset", "tiny", "--quiet", "--head", "linear",
                           "--set", f"data.cache_dir={encoders['cache']}")  # fmt: skip
    assert code == 0, err
    control = load_embeddings(out / "embeddings" / "random-audio.npz")
    assert control.feats["train"].shape[1] == 256  # the config's SampleCNN would give 512
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["audio"]["control"] == "random-init-audio"
    assert rows["random-init-audio"]["probe_info"]["dim"] == rows["audio"]["probe_info"]["dim"]
    assert np.isfinite(rows["spectrogram"]["delta_vs_control"])
