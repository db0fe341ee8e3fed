"""The search space and the trial config, without a Ray cluster: Optuna's define-by-run space
is conditional on the format and seeded, trial parameters map to config keys, and a resume under
another search space is refused before anything starts."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import yaml
from ray.tune.search.optuna import OptunaSearch

from mfclr.config import load_config
from mfclr.errors import ConfigError
from mfclr.train.keys import VAL_METRIC
from mfclr.tune.resume import resume_changes
from mfclr.tune.search import define_space, trial_config
from mfclr.tune.spec import load_sweep
from mfclr.tune.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "sweeps" / "smoke.yaml"


def _params() -> dict[str, dict]:
    spec, _ = load_sweep(SMOKE)
    return {n: p.model_dump() for n, p in spec.search.space.items()}


def _suggest(fmt: str, seed: int, n: int = 3) -> list[dict]:
    searcher = OptunaSearch(
        space=partial(define_space, fmt=fmt, params=_params()),
        metric=VAL_METRIC,
        mode="max",
        seed=seed,
    )
    return [searcher.suggest(f"t{i}") for i in range(n)]


def test_space_is_conditional_on_the_format_and_seeded() -> None:
    audio, spec = _suggest("audio", 0), _suggest("spectrogram", 0)
    assert all(c["mask_size"] is None and c["format"] == "audio" for c in audio)
    assert all(2 <= c["mask_size"] <= 12 for c in spec)
    # Same keys for every format (W&B group-by), values inside the sweep file's ranges.
    assert set(audio[0]) == set(spec[0])
    assert all(
        0.1 <= c["temperature"] <= 1.0
        and c["probe_head"] in ("linear", "mlp")
        and c["projector"] in ("mlp", "linear", "none")
        for c in audio + spec
    )
    assert _suggest("audio", 0) == audio and _suggest("audio", 1) != audio


def test_trial_config_maps_names_to_config_keys() -> None:
    spec, base = load_sweep(SMOKE)
    cfg = trial_config(
        base,
        {"format": "audio", "temperature": 0.2, "mask_size": None, "probe_head": "mlp",
         "projector": "none"},
        spec.param_keys(),
    )  # fmt: skip
    assert cfg.train.temperature == 0.2 and cfg.train.val_head == "mlp"
    assert cfg.model.projector == "none" and base.model.projector == "mlp"
    assert cfg.augment.spectrogram.freq_mask.size == base.augment.spectrogram.freq_mask.size
    assert load_config(None, "tiny").train.temperature != 0.2


def test_resume_with_another_search_space_is_refused(tmp_path: Path) -> None:
    spec, base = load_sweep(SMOKE)
    changed, _ = load_sweep(SMOKE, ["search.seed=7"])
    folder = tmp_path / spec.name
    folder.mkdir()
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    (folder / "config.yaml").write_text(yaml.safe_dump(base.to_dict()))
    with pytest.raises(ConfigError, match=r"other settings \(spec.search.seed 0 -> 7\)"):
        run_sweep(changed, base, tmp_path, resume=True)


def test_a_sweep_saved_before_a_key_existed_resumes_at_the_behaviour_it_ran_with(
    tmp_path: Path,
) -> None:
    # model.samplecnn.normalize arrived with the default `rms`; a sweep saved before it trained
    # without normalising, so resuming it under today's default must count as a change.
    spec, base = load_sweep(SMOKE)
    assert base.model.samplecnn.normalize == "rms"
    folder = tmp_path / spec.name
    folder.mkdir()
    saved = base.to_dict()
    del saved["model"]["samplecnn"]["normalize"]
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    (folder / "config.yaml").write_text(yaml.safe_dump(saved))
    changes = resume_changes(folder, spec.model_dump(mode="json"), base)
    assert changes == {"config.model.samplecnn.normalize": ["none", "rms"]}
