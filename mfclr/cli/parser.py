"""The argument parser of `mfclr`: one function per command group."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from mfclr.config import (
    DEFAULT_FORMATS,
    FUSION_NAMES,
    HEAD_NAMES,
    format_names,
    preset_names,
    pretrain_names,
)

# What `mfclr --help` opens with: what the tool does, for someone who has not read the code.
DESCRIPTION = """\
Multi-format contrastive learning of music representations: pretrain an audio encoder
(SampleCNN on the waveform) and a spectrogram encoder (ResNet-18 on a mel spectrogram) with
SimCLR-style contrastive learning, then probe the frozen embeddings, alone and fused, for genre
classification (accuracy, macro mAP, per-class AP on the test split), next to a random-init
control. Runs locally, as Ray Train workers, or as Ray Tune + Optuna sweeps.
"""
EPILOG = """\
examples:
  mfclr run --preset demo --out runs/demo      pretrain both formats, probe, print the table
  mfclr data info --preset demo                tracks per class and split, what was skipped
  mfclr report runs/demo                       report.md with plots of a finished run
  mfclr predict --model runs/demo/classifier.pt song.wav album/   genres of your own audio
  mfclr config show --preset demo              every setting, with its default

Run `mfclr COMMAND --help` for one command's options.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, naming the fix."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _set_option(p: argparse.ArgumentParser, help: str) -> None:
    """`--set KEY=VALUE`, repeatable, collected in `args.overrides`."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=help)  # fmt: skip


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"a built-in preset: {', '.join(preset_names())}")
    p.add_argument("--config", type=Path, help="a YAML config file (overrides the preset)")
    _set_option(p, "override one config key, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop on a missing or corrupt audio file instead of skipping it",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _save_row(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--save-row",
        metavar="NAME/HEAD",
        help="the table row saved as classifier.pt beside results.json, e.g. fused/linear or "
        "random-init/mlp (probe.save_row; default: the best row on valid with trained encoders)",
    )


def _override_resume(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--override-resume",
        action="store_true",
        help="resume even though hyperparameters differ from the checkpoint's; the changes "
        "are recorded in run.json",
    )


def _formats(text: str) -> list[str]:
    """Comma-separated pretraining formats, checked against the registry when parsed (a format
    registered at run time is valid)."""
    items = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in items if f not in pretrain_names()]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown format {bad[0] if bad else text!r}; choose from {', '.join(pretrain_names())}"
        )
    return items


def _pretrain_format(text: str) -> str:
    """One pretraining format."""
    items = _formats(text)
    if len(items) != 1:
        raise argparse.ArgumentTypeError(f"--format takes one format, got {text!r}")
    return items[0]


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got '{text}'")
    return value


def _out_path(text: str) -> Path:
    """A path to write to; an empty one would write into the current folder unasked."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a folder, e.g. runs/demo")
    return Path(text)


def _encoder_arg(text: str) -> tuple[str | None, Path]:
    fmt, sep, path = text.partition("=")
    if sep and fmt in format_names():
        return fmt, Path(path)
    if sep:
        raise argparse.ArgumentTypeError(
            f"unknown format '{fmt}' in '{text}'; use FORMAT=PATH with one of "
            f"{', '.join(format_names())}"
        )
    return None, Path(text)


Subparsers = argparse._SubParsersAction


def _add_config_and_data(sub: Subparsers) -> None:
    cfg = sub.add_parser("config", help="show the resolved config").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    _common(cfg.add_parser("show", help="print the resolved config as YAML"))

    data = sub.add_parser("data", help="prepare or inspect datasets").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    _common(data.add_parser("prepare", help="decode and cache the datasets once"))
    _common(data.add_parser("info", help="tracks per split and class, cache location"))


def _add_pretrain(sub: Subparsers) -> None:
    p = sub.add_parser("pretrain", help="contrastive pretraining of one format")
    p.add_argument(
        "--format",
        required=True,
        type=_pretrain_format,
        help=f"one of {', '.join(pretrain_names())} (cross: the two formats of "
        "train.cross_pair at once, a track's two formats as the pair)",
    )
    p.add_argument(
        "--out",
        required=True,
        type=_out_path,
        help="the run folder: config.yaml, checkpoints/last.pt, encoder.pt (rerun to resume)",
    )
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    _override_resume(p)
    p.add_argument(
        "--workers",
        type=_non_negative,
        default=0,
        help="Ray Train data-parallel workers (0: a plain local run, no Ray)",
    )
    p.add_argument("--use-gpu", action="store_true", help="one GPU per Ray Train worker")
    p.add_argument(
        "--storage",
        help="Ray Train storage root (s3://... or a shared folder); default: the parent of --out",
    )
    p.add_argument(
        "--max-failures",
        type=_non_negative,
        default=None,
        help="worker-group restarts from the last checkpoint (Ray Train; default: "
        "ray.max_failures of the config, 1)",
    )
    _common(p)


def _add_sweep(sub: Subparsers) -> None:
    p = sub.add_parser("sweep", help="Ray Tune + Optuna sweep per format, then the fused probe")
    p.add_argument("file", type=Path, help="a sweep file, e.g. sweeps/smoke.yaml")
    p.add_argument(
        "--out",
        type=_out_path,
        default=Path("runs/sweeps"),
        help="the sweep folder is OUT/<sweep name> (default runs/sweeps)",
    )
    p.add_argument(
        "--storage",
        help="shared storage root for Tune state and checkpoints "
        "(s3://bucket/prefix or NFS); default: the sweep file's, else --out",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep; finished trials are not run again",
    )
    p.add_argument(
        "--override-resume",
        action="store_true",
        help="resume even though the sweep's settings changed; the changes are recorded in "
        "resume_overrides.json",
    )
    _set_option(p, "override a sweep key (budget.trials=1) or a config key (train.lr=0.001)")
    p.add_argument("--check", action="store_true", help="validate the sweep file and exit")
    p.add_argument("--quiet", action="store_true", help="less Tune output")


def _add_embed_and_probe(sub: Subparsers) -> None:
    p = sub.add_parser(
        "embed", help="export track embeddings of a frozen encoder: a dataset's, or your files'"
    )
    p.add_argument("--encoder", required=True, type=_encoder_arg, help="encoder.pt or last.pt")
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="audio files or folders (walked recursively) to embed instead of the configured "
        "dataset; chunked as the encoder's run probed (its train.max_eval_chunks)",
    )
    p.add_argument(
        "--out",
        required=True,
        type=_out_path,
        help="the .npz file to write (not an existing folder)",
    )
    _device(p)
    _common(p)

    p = sub.add_parser("probe", help="probe frozen encoders: fusion x head variants")
    p.add_argument(
        "--encoder",
        required=True,
        action="append",
        type=_encoder_arg,
        metavar="FORMAT=PATH",
        help="one per format, e.g. audio=runs/x/encoder.pt",
    )
    p.add_argument(
        "--fusion",
        action="append",
        choices=FUSION_NAMES,
        help=f"fusion strategy (repeatable): {', '.join(FUSION_NAMES)}",
    )
    p.add_argument("--head", action="append", choices=HEAD_NAMES, help="probe head (repeatable)")
    p.add_argument(
        "--out",
        required=True,
        type=_out_path,
        help="the output folder: embeddings/*.npz, results.json, results.md, classifier.pt",
    )
    _save_row(p)
    _common(p)


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the encoders run (auto: a GPU when one is visible)")  # fmt: skip


def _add_predict(sub: Subparsers) -> None:
    p = sub.add_parser("predict", help="genres of your own audio files with a saved classifier")
    p.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH",
        help="audio files or folders (walked recursively for .wav .flac .mp3 .ogg .au)",
    )  # fmt: skip
    p.add_argument(
        "--model",
        required=True,
        type=Path,
        help="a classifier.pt (written beside results.json by mfclr run, probe and sweep)",
    )
    p.add_argument("--top-k", type=_positive, default=3, help="labels shown per file (3)")
    p.add_argument("--out", type=Path, help="also write the predictions to a .csv or .json file")
    p.add_argument(
        "--strict", action="store_true",
        help="stop at the first corrupt, empty or too-short file instead of skipping it",
    )  # fmt: skip
    _device(p)
    p.add_argument(
        "--batch-size", type=_positive, default=None,
        help="chunks per forward batch (default: the probe's, which reproduces its table)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_run_and_report(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="pretrain every format, then the probe table")
    p.add_argument(
        "--out",
        required=True,
        type=_out_path,
        help="the run folder: pretrain/<format>/, embeddings/, results.json, results.md, "
        "classifier.pt (rerun to resume)",
    )
    p.add_argument(
        "--formats",
        type=_formats,
        default=list(DEFAULT_FORMATS),
        help="comma-separated, default audio,spectrogram; add cross for cross-format pretraining",
    )
    p.add_argument("--fresh", action="store_true", help="retrain even if checkpoints exist")
    p.add_argument(
        "--seeds",
        type=_positive,
        default=1,
        help="repeat pretraining with N seeds (train.seed, +1, ...) into OUT/seed-<s>/ and "
        "report mean ± std over them",
    )
    _save_row(p)
    _override_resume(p)
    _common(p)

    p = sub.add_parser("report", help="report.md with PNG plots of a finished run or sweep")
    p.add_argument(
        "dir", type=Path, help="a run folder (the --out of `mfclr run`) or a sweep folder"
    )
    p.add_argument("--quiet", action="store_true", help="no log lines")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mfclr",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_config_and_data, _add_pretrain, _add_sweep, _add_embed_and_probe,
                _add_predict, _add_run_and_report):  # fmt: skip
        add(sub)
    return parser
