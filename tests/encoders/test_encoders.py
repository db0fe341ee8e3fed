"""Encoders: shapes, geometry, gradients, determinism and the checkpoint spec round trip."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mfclr.config import Config, ModelConfig, ResNetConfig, SampleCNNConfig
from mfclr.encoders import ResNetEncoder, SampleCNN, encoder_from_spec
from mfclr.errors import CheckpointError, ConfigError
from mfclr.formats import build_encoder, encoder_spec

SMALL = [8] * 9 + [16]
SMALL_MODEL = Config(
    model=ModelConfig(
        samplecnn=SampleCNNConfig(channels=SMALL), resnet=ResNetConfig(blocks=[1, 1, 1, 1])
    )
)


def _every_param_gets_grad(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    out = model(x)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


# ----------------------------------------------------------------------------- SampleCNN


@pytest.mark.parametrize("length", [3, 100, 6_561, 59_049, 110_250])
def test_samplecnn_output_shape_for_many_lengths(length: int) -> None:
    torch.manual_seed(0)
    model = SampleCNN(SMALL).eval()
    with torch.no_grad():
        out = model(torch.randn(2, length))
    assert out.shape == (2, 16) and model.num_features == 16
    assert torch.isfinite(out).all()


def test_samplecnn_accepts_channel_axis_and_matches_2d_input() -> None:
    torch.manual_seed(0)
    model = SampleCNN(SMALL).eval()
    x = torch.randn(2, 2_000)
    with torch.no_grad():
        assert torch.equal(model(x), model(x.unsqueeze(1)))


def test_samplecnn_clmr_geometry_is_one_frame() -> None:
    # 3^10 samples: the last block sees 3 frames, so CLMR's MaxPool1d(3) gives exactly one frame
    # and the global pool is the same number.
    torch.manual_seed(0)
    model = SampleCNN(SMALL).eval()
    with torch.no_grad():
        x = torch.randn(2, 59_049)
        feats = model.forward_features(x)
        clmr = nn.MaxPool1d(3)(feats)
        out = model(x)
    assert feats.shape == (2, 16, 3)
    assert clmr.shape == (2, 16, 1)
    assert torch.equal(clmr.squeeze(-1), out)


def test_samplecnn_sees_the_end_of_a_5s_clip() -> None:
    # CLMR's floor pooling ignored samples after 88,571 of 110,250; here the tail matters.
    torch.manual_seed(0)
    model = SampleCNN(SMALL).eval()
    x = torch.randn(1, 110_250)
    y = x.clone()
    y[:, -1_000:] = 10.0
    with torch.no_grad():
        assert not torch.equal(model(x), model(y))


def test_samplecnn_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    _every_param_gets_grad(SampleCNN(SMALL), torch.randn(3, 2_000))


def test_samplecnn_default_widths_clmr_shape() -> None:
    torch.manual_seed(0)
    model = build_encoder("audio", Config())
    assert isinstance(model, SampleCNN) and model.num_features == 512
    out = model(torch.randn(2, 59_049))
    out.sum().backward()
    assert out.shape == (2, 512) and torch.isfinite(out).all()


@pytest.mark.parametrize("length", [0, 2])
def test_samplecnn_too_short_input_is_a_clear_error(length: int) -> None:
    with pytest.raises(ValueError, match="at least 3 samples"):
        SampleCNN(SMALL)(torch.randn(2, length))


def test_samplecnn_wrong_shape_and_bad_widths_are_errors() -> None:
    with pytest.raises(ValueError, match="expects waveforms"):
        SampleCNN(SMALL)(torch.randn(2, 2, 100))
    with pytest.raises(ValueError, match="channel widths"):
        SampleCNN([8])


# ----------------------------------------------------------------------------- ResNet


def test_resnet_small_shape_and_gradients() -> None:
    torch.manual_seed(0)
    model = ResNetEncoder(blocks=(1, 1, 1, 1))
    x = torch.randn(2, 1, 32, 40)
    out = model(x)
    assert out.shape == (2, 512) and model.num_features == 512
    assert torch.isfinite(out).all()
    model.zero_grad()
    _every_param_gets_grad(model, x)


def test_resnet18_shape_and_3d_input() -> None:
    torch.manual_seed(0)
    model = build_encoder("spectrogram", Config()).eval()
    assert isinstance(model, ResNetEncoder) and model.blocks == [2, 2, 2, 2]
    mel = torch.randn(2, 64, 48)
    with torch.no_grad():
        out = model(mel)
        assert torch.equal(out, model(mel.unsqueeze(1)))
    assert out.shape == (2, 512)
    with pytest.raises(ValueError, match="expects spectrograms"):
        model(torch.randn(2, 3, 64, 48))


# ----------------------------------------------------------------------------- building and specs


@pytest.mark.parametrize("fmt", ["audio", "spectrogram"])
def test_building_is_deterministic_under_manual_seed(fmt: str) -> None:
    torch.manual_seed(3)
    a = build_encoder(fmt, SMALL_MODEL).state_dict()
    torch.manual_seed(3)
    b = build_encoder(fmt, SMALL_MODEL).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("fmt", "shape"), [("audio", (2, 3_000)), ("spectrogram", (2, 1, 32, 40))])
def test_spec_round_trip_gives_identical_outputs(fmt: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_encoder(fmt, SMALL_MODEL).eval()
    spec = json.loads(json.dumps(encoder_spec(fmt, SMALL_MODEL)))  # survives JSON unchanged
    assert spec == encoder_spec(fmt, SMALL_MODEL)
    torch.manual_seed(99)  # different init: only the state dict makes them equal
    rebuilt = encoder_from_spec(spec).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_bad_specs_and_formats_are_errors() -> None:
    with pytest.raises(CheckpointError, match="'transformer' is unknown"):
        encoder_from_spec({"arch": "transformer", "kwargs": {}})
    with pytest.raises(CheckpointError, match="keys 'arch' and 'kwargs'"):
        encoder_from_spec({"arch": "resnet"})
    with pytest.raises(CheckpointError, match="invalid"):
        encoder_from_spec({"arch": "resnet", "kwargs": {"blocks": [1, 1]}})
    with pytest.raises(ConfigError, match="unknown input format 'video'"):
        build_encoder("video", Config())
