"""Bad input through the CLI: one line on stderr naming the thing and the fix, exit code 2, no
traceback — and nothing already written is lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.data_fixtures import make_gtzan, make_labelled, write_tone
from tests.helpers import run_cli


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _folder_args(root: Path, cache: Path, *extra: str) -> list[str]:
    return ["data", "prepare", "--preset", "tiny", "--set", f"data.cache_dir={cache}",
            "--set", "data.probe.kind=folder", "--set", f"data.probe.root={root}",
            "--set", "data.sample_rate=8000", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["run", "--out", "x", "--bogus"], ["unrecognized arguments: --bogus", "--help"]),
        (["pretrain", "--format", "video", "--out", "x"], ["unknown format 'video'"]),
        (["run", "--out", "x", "--formats", "audio,midi"], ["unknown format 'midi'"]),
        (["config", "show", "--set", "train.temperature=0"], ["train.temperature", "greater"]),
        (["config", "show", "--set", "train.tmperature=1"], ["unknown config key"]),
        (["config", "show", "--set", "train.epochs=ten"], ["train.epochs", "valid integer"]),
        (["config", "show", "--set", "augment.audio.gain.min_db=3"], ["swap them"]),
        (["config", "show", "--set", "augment.spectrogram.freq_mask.size=4096"], ["mel axis"]),
        (["config", "show", "--preset", "nope"], ["unknown preset 'nope'"]),
        (["config", "show", "--config", "/no/such.yaml"], ["/no/such.yaml", "does not exist"]),
    ],
)
def test_bad_flags_and_values(argv: list[str], needles: list[str]) -> None:
    _one_line_error(*run_cli(*argv)[::2], *needles)


def test_config_show_prints_the_resolved_config() -> None:
    code, out, _ = run_cli("config", "show", "--preset", "tiny", "--set", "train.lr=1e-4")
    assert code == 0 and "lr: 0.0001" in out and "temperature: 0.5" in out


def test_missing_data_folder(tmp_path: Path) -> None:
    code, _, err = run_cli(*_folder_args(tmp_path / "nowhere", tmp_path / "c"))
    _one_line_error(code, err, str(tmp_path / "nowhere"))


def test_missing_gtzan_folder(tmp_path: Path) -> None:
    code, _, err = run_cli("data", "prepare", "--set", "data.probe.kind=gtzan",
                           "--set", f"data.probe.root={tmp_path / 'gtzan'}")  # fmt: skip
    _one_line_error(code, err, "gtzan")


def test_empty_class_folder(tmp_path: Path) -> None:
    root = make_labelled(tmp_path / "music", {"rock": 6, "jazz": 6})
    (root / "polka").mkdir()
    code, _, err = run_cli(*_folder_args(root, tmp_path / "c"))
    _one_line_error(code, err, "polka")


def _bad_files(root: Path) -> dict[str, Path]:
    """One broken file of each kind inside a labelled folder of good ones."""
    make_labelled(root, {"rock": 8, "jazz": 8}, seconds=1.5)
    corrupt = root / "rock" / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 10)
    truncated = write_tone(root / "rock" / "truncated.wav", 2.0)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    empty = root / "jazz" / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 8000)
    nan = root / "jazz" / "nan.wav"
    sf.write(str(nan), np.full(8000, np.nan, dtype=np.float32), 8000, subtype="FLOAT")
    return {"corrupt": corrupt, "truncated": truncated, "empty": empty, "nan": nan}


def test_broken_files_are_skipped_by_name_or_fatal_when_strict(tmp_path: Path, caplog) -> None:
    root = tmp_path / "music"
    bad = _bad_files(root)
    code, _, err = run_cli(*_folder_args(root, tmp_path / "c"))
    assert code == 0, err
    logged = caplog.text
    for path in bad.values():
        assert path.name in logged
    for name, path in bad.items():
        for other in set(bad) - {name}:
            bad[other].rename(bad[other].with_suffix(".off"))
        code, _, err = run_cli(*_folder_args(root, tmp_path / f"c-{name}", "--strict"))
        _one_line_error(code, err, path.name)
        for other in set(bad) - {name}:
            bad[other].with_suffix(".off").rename(bad[other])


def test_gtzan_wrong_rate_and_multichannel_are_fatal_when_strict(tmp_path: Path) -> None:
    from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid

    ids = filtered_train + filtered_valid + filtered_test  # strict wants every file present
    root = make_gtzan(tmp_path / "gtzan" / "genres", ids, seconds=0.05)
    write_tone(root / "blues" / "blues.00000.wav", 0.5, sr=44100)
    args = ["data", "prepare", "--strict", "--set", "data.probe.kind=gtzan",
            "--set", f"data.probe.root={tmp_path / 'gtzan'}", "--set", f"data.cache_dir={tmp_path}",
            "--set", "data.clip_seconds=1.0"]  # fmt: skip
    _one_line_error(*run_cli(*args)[::2], "blues.00000.wav", "44100")
    write_tone(root / "blues" / "blues.00000.wav", 0.5, sr=22050, channels=2)
    _one_line_error(*run_cli(*args)[::2], "blues.00000.wav")


def test_clips_too_short_are_rejected_and_counted(tmp_path: Path, caplog) -> None:
    root = make_labelled(tmp_path / "music", {"rock": 6, "jazz": 6}, seconds=1.5)
    write_tone(root / "rock" / "short.wav", 0.2)
    code, out, err = run_cli(*_folder_args(root, tmp_path / "c", "--set",
                                           "data.short_clips=reject"))  # fmt: skip
    assert code == 0, err
    assert "short.wav" in caplog.text and "rejected" in caplog.text
    code, _, err = run_cli(*_folder_args(root, tmp_path / "c2", "--strict", "--set",
                                         "data.short_clips=reject"))  # fmt: skip
    _one_line_error(code, err, "short.wav", "shorter than one")


def test_probe_rejects_a_checkpoint_of_the_wrong_kind(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    code, _, err = run_cli("probe", "--encoder", f"audio={tmp_path / 'notes.pt'}", "--out",
                           str(tmp_path / "out"), "--preset", "tiny")  # fmt: skip
    _one_line_error(code, err, "notes.pt")
    code, _, err = run_cli("probe", "--encoder", f"audio={tmp_path / 'missing.pt'}", "--out",
                           str(tmp_path / "out"), "--preset", "tiny")  # fmt: skip
    _one_line_error(code, err, "missing.pt", "does not exist")


def test_config_show_lists_the_dataset_kinds_and_stays_valid_yaml() -> None:
    import typing

    import yaml

    from mfclr.config import DATASET_KINDS, DatasetSpec, build_config

    code, out, _ = run_cli("config", "show", "--preset", "tiny")
    assert code == 0
    kinds = typing.get_args(DatasetSpec.model_fields["kind"].annotation)
    assert set(DATASET_KINDS) == set(kinds)
    for kind in kinds:
        assert any(line.startswith(f"#   {kind} ") for line in out.splitlines()), kind
    build_config(yaml.safe_load(out))  # the comments change nothing


def test_the_published_layout_loads_with_kind_and_root_alone(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for c, cls in enumerate(("alpha", "beta")):
        for i in range(3):
            write_tone(root / "genres" / cls / f"{cls}.{i:05d}.wav", 0.3, freq=300 + 50 * c + i)
    (root / "splits").mkdir()
    for i, split in enumerate(("train", "valid", "test")):
        lines = "".join(f"genres/{cls}/{cls}.{i:05d}.wav\n" for cls in ("alpha", "beta"))
        (root / "splits" / f"{split}.txt").write_text(lines)
    args = _folder_args(root, tmp_path / "c")
    args[1] = "info"
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert f"split:  split files at {root / 'splits'}" in out
    assert "train 2, valid 2, test 2" in out and "splits" not in out.split("\n  class ", 1)[1]


@pytest.mark.parametrize("command", ["run", "pretrain", "probe"])
def test_an_out_that_is_a_file_or_below_one_is_refused_before_any_work(
    tmp_path: Path, command: str
) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("keep me")
    extra = {"run": [], "pretrain": ["--format", "audio"],
             "probe": ["--encoder", f"audio={tmp_path / 'missing.pt'}"]}[command]  # fmt: skip
    for out, needle in ((blocker, "is a file"), (blocker / "run", "lies below the file")):
        code, _, err = run_cli(command, "--preset", "tiny", "--out", str(out), *extra)
        _one_line_error(code, err, str(out), needle, "--out")
    assert blocker.read_text() == "keep me"


def test_embed_refuses_an_existing_folder_before_embedding(tmp_path: Path) -> None:
    code, _, err = run_cli("embed", "--preset", "tiny", "--encoder", str(tmp_path / "enc.pt"),
                           "--out", str(tmp_path))  # fmt: skip
    _one_line_error(code, err, str(tmp_path), "is a folder", ".npz")


def test_a_sweep_storage_below_a_file_is_refused_before_ray_starts(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    storage = tmp_path / "blocker" / "store"
    sweep = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"
    code, _, err = run_cli("sweep", str(sweep), "--out", str(tmp_path / "sweeps"),
                           "--storage", str(storage))  # fmt: skip
    _one_line_error(code, err, str(storage), "--storage", "lies below the file")
    assert not (tmp_path / "sweeps" / "smoke" / "sweep.yaml").exists()  # refused before any work


def test_a_full_disk_during_a_checkpoint_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    import mfclr.io as mio

    real = mio._write_chunk

    def full_for_checkpoints(fd: int, data: memoryview) -> int:
        if "last.pt" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(mio, "_write_chunk", full_for_checkpoints)
    out = tmp_path / "run"
    code, _, err = run_cli("pretrain", "--format", "audio", "--preset", "tiny", "--out", str(out),
                           "--quiet", "--set", "train.epochs=1", "--set",
                           f"data.cache_dir={tmp_path / 'cache'}")  # fmt: skip
    _one_line_error(code, err, str(out / "checkpoints" / "last.pt"), "No space left on device")
    assert list((out / "checkpoints").iterdir()) == []  # no half-written temp file


def test_fusion_and_head_names_are_checked_when_the_config_is_built(tmp_path: Path) -> None:
    from mfclr.config import FUSION_NAMES
    from mfclr.probe.fusion import FUSIONS

    assert set(FUSION_NAMES) == set(FUSIONS)
    code, _, err = run_cli("config", "show", "--set", "probe.fusions=[concat,bogus]")
    _one_line_error(code, err, "bogus", "probe.fusions", ", ".join(FUSION_NAMES))
    code, _, err = run_cli("config", "show", "--set", "probe.heads=[svm]")
    _one_line_error(code, err, "svm", "linear, mlp")
    code, _, err = run_cli("probe", "--encoder", f"audio={tmp_path / 'a.pt'}", "--fusion", "bogus",
                           "--out", str(tmp_path / "p"))  # fmt: skip
    _one_line_error(code, err, "bogus", "concat")


def test_a_nan_loss_is_one_line(tmp_path: Path) -> None:
    code, _, err = run_cli("pretrain", "--format", "audio", "--preset", "tiny", "--quiet",
                           "--out", str(tmp_path / "run"), "--set", "train.lr=1e12",
                           "--set", f"data.cache_dir={tmp_path / 'cache'}")  # fmt: skip
    _one_line_error(code, err, "loss became nan", "train.lr")


def test_every_out_flag_says_what_it_is() -> None:
    from mfclr.cli import build_parser

    parser = build_parser()
    assert parser.description.startswith("Multi-format contrastive learning")
    commands = next(a for a in parser._actions if a.dest == "command").choices
    outs = {
        name: next((a for a in sub._actions if "--out" in a.option_strings), None)
        for name, sub in commands.items()
    }
    with_out = {name: a for name, a in outs.items() if a is not None}
    assert set(with_out) >= {"pretrain", "sweep", "embed", "probe", "run"}
    assert all(a.help and len(a.help) > 10 for a in with_out.values()), with_out
