"""The format registry: a third input format defined here, in the tests only, through the
registry's public functions, pretrains alone and in cross-format pairs, probes with its own
random-init control, and is a valid `--format`, touching no file in mfclr/. And the process
opens each dataset once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import mfclr.data.cache as cache_module
from mfclr.augment import RandomMask
from mfclr.config import Config, format_names, load_config
from mfclr.encoders import register_encoder
from mfclr.encoders.frontends import MelFrontend, register_frontend
from mfclr.errors import ConfigError
from mfclr.formats import InputFormat, build_frontend, register_format, unregister_format
from mfclr.formats.frozen import load_frozen
from mfclr.probe.mfcc import dct_matrix
from mfclr.stage import probe_and_report
from mfclr.train.local import pretrain_local
from tests.helpers import run_cli, tiny_config

N_COEFFS = 12


class MfccFrontend(nn.Module):
    """(B, T) -> (B, N_COEFFS, frames): log-mel, then a DCT over the mel axis."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> None:
        super().__init__()
        self.mel = MelFrontend(sample_rate, n_fft, hop_length, n_mels)
        self.register_buffer("dct", dct_matrix(n_mels, N_COEFFS))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bmt,mc->bct", self.mel(x)[:, 0], self.dct.to(x.device))


class MfccChain(nn.Module):
    """The toy format's augmentation: its frontend, then a random time mask."""

    def __init__(self, frontend: nn.Module) -> None:
        super().__init__()
        self.frontend, self.mask = frontend, RandomMask(p=0.8, size=4, axis=-1)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.mask(self.frontend(x)[:, None], generator)[:, 0]


class TinyCNN(nn.Module):
    """(B, N_COEFFS, frames) -> (B, width): one conv, BatchNorm, ReLU, a global max."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.num_features = width
        self.net = nn.Sequential(nn.Conv1d(N_COEFFS, width, 3, padding=1), nn.BatchNorm1d(width),
                                 nn.ReLU())  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).amax(dim=-1)


def _frontend_spec(cfg: Config) -> dict:
    m = cfg.mel
    kwargs = {"n_fft": m.n_fft, "hop_length": m.hop_length, "n_mels": m.n_mels}
    return {"name": "toy-mfcc", "kwargs": {"sample_rate": cfg.data.sample_rate, **kwargs}}


@pytest.fixture(scope="module")
def toy() -> Iterator[str]:
    register_encoder("toy-cnn", TinyCNN)
    register_frontend("toy-mfcc", MfccFrontend)
    register_format(
        InputFormat(
            "toy",
            encoder=lambda cfg: {"arch": "toy-cnn", "kwargs": {"width": 24}},
            frontend=_frontend_spec,
            augment=lambda cfg: MfccChain(build_frontend("toy", cfg)),
        ),
        description="a tiny CNN on MFCCs (tests only)",
    )
    yield "toy"
    unregister_format("toy")


@pytest.fixture(scope="module")
def cache(tiny_cache: Path) -> Path:
    return tiny_cache


def test_a_registered_format_pretrains_and_embeds_from_its_file(
    toy: str, cache: Path, tmp_path: Path
) -> None:
    assert toy in format_names()
    cfg = tiny_config(cache, "train.epochs=2")
    path = pretrain_local(cfg, toy, tmp_path / "toy", progress=False)[toy]
    frozen = load_frozen(path, toy)  # the file carries its frontend: no config is needed
    assert frozen.frontend_spec["name"] == "toy-mfcc"
    out = frozen.embed_input(torch.randn(3, cfg.data.crop_samples))
    assert out.shape == (3, 24) and torch.isfinite(out).all()
    assert frozen.control().encoder_spec == frozen.encoder_spec


def test_cross_format_pairs_take_any_two_registered_formats(
    toy: str, cache: Path, tmp_path: Path
) -> None:
    cfg = tiny_config(cache, "train.epochs=2", "train.cross_pair=[audio, toy]")
    paths = pretrain_local(cfg, "cross", tmp_path / "cross", progress=False)
    assert set(paths) == {"audio", "toy"}
    assert load_frozen(paths["toy"], "toy").encoder.num_features == 24


def test_the_probe_table_holds_the_new_format_and_its_control(
    toy: str, cache: Path, tmp_path: Path
) -> None:
    cfg = tiny_config(cache, "train.epochs=1", "probe.heads=[linear]")
    encoders = {
        f: load_frozen(pretrain_local(cfg, f, tmp_path / f, progress=False)[f], f)
        for f in ("audio", toy)
    }
    result = probe_and_report(cfg, encoders, tmp_path / "probe")
    rows = {r["name"]: r for r in result["rows"]}
    assert {"toy", "fused", "random-init-toy", "random-init", "mfcc"} <= set(rows)
    assert rows["toy"]["control"] == "random-init-toy" and "delta_vs_mfcc" in rows["toy"]
    assert rows["fused"]["formats"] == ["audio", "toy"]


def test_the_cli_takes_a_registered_format_and_names_the_choices(
    toy: str, cache: Path, tmp_path: Path
) -> None:
    code, out, err = run_cli("pretrain", "--format", toy, "--preset", "tiny", "--out",
                             str(tmp_path / "cli"), "--quiet", "--set", f"data.cache_dir={cache}",
                             "--set", "train.epochs=1")  # fmt: skip
    assert code == 0, err
    assert "toy encoder:" in out
    code, _, err = run_cli("pretrain", "--format", "toyy", "--out", str(tmp_path / "x"))
    assert code == 2 and "choose from audio, spectrogram, toy, cross" in err
    with pytest.raises(ConfigError, match="unknown input format 'toyy'"):
        load_config(preset="tiny", overrides=["train.cross_pair=[audio, toyy]"])


def test_a_run_opens_each_dataset_once_per_process(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mfclr run` (both formats, validation every epoch, a compare variant, the probe with its
    controls and the MFCC row) lists the embedded dataset once, and the spectrogram trained at
    its own sample rate opens the tracks at that rate once more."""
    opened: Counter[str] = Counter()
    real = cache_module.list_tracks

    def counting(spec, data, progress=True):  # noqa: ANN001, ANN202
        opened[f"{spec.kind}@{data.sample_rate}"] += 1
        return real(spec, data, progress)

    monkeypatch.setattr(cache_module, "list_tracks", counting)
    code, _, err = run_cli("run", "--preset", "tiny", "--out", str(tmp_path / "run"), "--quiet",
                           "--set", f"data.cache_dir={cache}", "--set", "train.epochs=2",
                           "--set", "train.eval_every=1", "--set", "probe.heads=[linear]",
                           "--set", "compare.lowlr.train.lr=0.0003",
                           "--set", "per_format.spectrogram.data.sample_rate=16000")  # fmt: skip
    assert code == 0, err
    assert opened == {"embedded@8000": 1, "embedded@16000": 1}, opened
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    spec = next(r for r in rows if r["name"] == "spectrogram")
    assert spec["control"] == "random-init-spectrogram"
