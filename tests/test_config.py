"""The typed config: defaults, presets, overrides, and one-line errors for bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mfclr.config import Config, build_config, load_config, parse_set_args, preset_names
from mfclr.errors import ConfigError


def test_defaults_match_the_paper() -> None:
    cfg = Config()
    assert cfg.train.temperature == 0.5
    assert cfg.train.weight_decay == 1e-6
    assert cfg.data.sample_rate == 22050 and cfg.data.clip_seconds == 5.0
    assert cfg.data.crop_samples == 110250
    assert (cfg.augment.audio.gain.min_db, cfg.augment.audio.gain.max_db) == (-6.0, 0.0)
    assert cfg.augment.audio.pitch.semitones == 5
    assert cfg.model.samplecnn.channels[-1] == 512


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"train": {"temperature": 0}}, "train.temperature"),
        ({"train": {"temperature": -1.0}}, "greater than 0"),
        ({"train": {"tempreature": 0.5}}, "unknown config key 'train.tempreature'"),
        ({"augment": {"audio": {"gain": {"min_db": 0.0, "max_db": -6.0}}}}, "swap them"),
        ({"train": {"epochs": "3"}}, "valid integer"),
        ({"train": {"epochs": 2.5}}, "valid integer"),
        ({"augment": {"spectrogram": {"freq_mask": {"size": 500}}}}, "larger than the mel axis"),
        ({"augment": {"spectrogram": {"time_mask": {"size": 100000}}}}, "larger than the time"),
        ({"data": {"probe": {"kind": "gtzan"}}}, "needs a root folder"),
        ({"mel": {"f_max": 20000.0}, "data": {"sample_rate": 16000}}, "mel.f_max"),
        ({"augment": {"audio": {"noise": {"p": 1.5}}}}, "augment.audio.noise.p"),
    ],
)
def test_bad_values_give_one_line_errors(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(data)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_parse_yaml_values_and_reject_unknown_keys() -> None:
    cfg = Config().with_overrides(["train.lr=1e-3", "probe.heads=[mlp]", "train.compile=true"])
    assert cfg.train.lr == 1e-3 and cfg.probe.heads == ["mlp"] and cfg.train.compile is True
    with pytest.raises(ConfigError, match="unknown config key 'train.nope'"):
        Config().with_overrides(["train.nope=1"])
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_set_args(["train.lr"])


def test_a_format_gets_its_own_recipe_on_top_of_the_shared_config() -> None:
    cfg = Config().with_overrides(["per_format.audio.train.epochs=7", "compare.slow.train.lr=1e-4"])
    assert cfg.per_format == {"audio": {"train.epochs": 7}}
    assert cfg.for_format("audio").train.epochs == 7
    assert cfg.for_format("spectrogram").train.epochs == cfg.train.epochs == 100
    slow_audio = cfg.variant("slow").for_format("audio")  # a compare variant keeps it
    assert (slow_audio.train.epochs, slow_audio.train.lr) == (7, 1e-4)
    assert cfg.for_format("audio").for_format("audio") == cfg.for_format("audio")


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("per_format.audi.train.epochs=7", "'audi' is not a format"),
        ("per_format.audio.data.probe.split_seed=3", "cannot differ between formats"),
        ("per_format.audio.train.epoch=7", "per_format.audio: unknown config key 'train.epoch'"),
        ("per_format.audio.train.epochs=0", "per_format.audio: config key 'train.epochs'"),
        ("per_format.audio=7", "valid dictionary"),
    ],
)
def test_bad_per_format_recipes_give_one_line_errors(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as err:
        Config().with_overrides([override])
    assert "\n" not in str(err.value)


def test_a_key_set_per_format_and_by_a_compare_variant_is_refused() -> None:
    with pytest.raises(ConfigError, match="both set 'train.lr'; set it in one place"):
        Config().with_overrides(["compare.slow.train.lr=1e-4", "per_format.audio.train.lr=1e-3"])


def test_optional_pretrain_section_can_be_set_by_override() -> None:
    cfg = Config().with_overrides(["data.pretrain.kind=unlabelled", "data.pretrain.root=/x"])
    assert cfg.data.pretrain is not None and cfg.data.pretrain.kind == "unlabelled"


def test_presets_load_and_files_merge(tmp_path) -> None:
    assert {"tiny", "demo"} <= set(preset_names())
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 7\n")
    cfg = load_config(f, "tiny", ["train.lr=0.01"])
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.01 and cfg.data.sample_rate == 8000


def test_config_file_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config(preset="nope")


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(ValidationError):
        cfg.train.lr = 1.0  # type: ignore[misc]
