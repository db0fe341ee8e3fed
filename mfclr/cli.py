"""`mfclr ...`: parse, validate, dispatch. Errors the user can fix print one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

from mfclr.config import (
    DATASET_KINDS,
    FORMATS,
    FUSION_NAMES,
    HEAD_NAMES,
    PRETRAIN_FORMATS,
    Config,
    load_config,
    preset_names,
)
from mfclr.errors import ConfigError, MfclrError
from mfclr.io import check_writable_dir, clean_stale_temps
from mfclr.progress import set_quiet

log = logging.getLogger("mfclr")

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
  mfclr config show --preset demo              every setting, with its default

Run `mfclr COMMAND --help` for one command's options.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, naming the fix."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"a built-in preset: {', '.join(preset_names())}")
    p.add_argument("--config", type=Path, help="a YAML config file (overrides the preset)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set train.epochs=5 (repeatable)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop on a missing or corrupt audio file instead of skipping it",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _override_resume(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--override-resume",
        action="store_true",
        help="resume even though hyperparameters differ from the checkpoint's; the changes "
        "are recorded in run.json",
    )


def _formats(text: str) -> list[str]:
    items = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in items if f not in PRETRAIN_FORMATS]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown format {bad[0] if bad else text!r}; choose from {', '.join(PRETRAIN_FORMATS)}"
        )
    return items


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


def _encoder_arg(text: str) -> tuple[str | None, Path]:
    fmt, sep, path = text.partition("=")
    if sep and fmt in FORMATS:
        return fmt, Path(path)
    if sep:
        raise argparse.ArgumentTypeError(f"unknown format '{fmt}' in '{text}'; use audio=PATH")
    return None, Path(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mfclr",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    cfg = sub.add_parser("config", help="show the resolved config").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    _common(cfg.add_parser("show", help="print the resolved config as YAML"))

    data = sub.add_parser("data", help="prepare or inspect datasets").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    _common(data.add_parser("prepare", help="decode and cache the datasets once"))
    _common(data.add_parser("info", help="tracks per split and class, cache location"))

    p = sub.add_parser("pretrain", help="contrastive pretraining of one format")
    p.add_argument(
        "--format",
        required=True,
        choices=PRETRAIN_FORMATS,
        help="cross = both encoders at once, a track's two formats as the pair",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
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
        default=1,
        help="worker-group restarts from the last checkpoint (Ray Train)",
    )
    _common(p)

    p = sub.add_parser("sweep", help="Ray Tune + Optuna sweep per format, then the fused probe")
    p.add_argument("file", type=Path, help="a sweep file, e.g. sweeps/smoke.yaml")
    p.add_argument(
        "--out",
        type=Path,
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
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sweep key (budget.trials=1) or a config key (train.lr=0.001)",
    )
    p.add_argument("--check", action="store_true", help="validate the sweep file and exit")
    p.add_argument("--quiet", action="store_true", help="less Tune output")

    p = sub.add_parser("embed", help="export track embeddings (with labels) of a frozen encoder")
    p.add_argument("--encoder", required=True, type=_encoder_arg, help="encoder.pt or last.pt")
    p.add_argument(
        "--out", required=True, type=Path, help="the .npz file to write (not an existing folder)"
    )
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
        type=Path,
        help="the output folder: embeddings/*.npz, results.json, results.md",
    )
    _common(p)

    p = sub.add_parser("run", help="pretrain every format, then the probe table")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the run folder: pretrain/<format>/, embeddings/, results.json, results.md "
        "(rerun to resume)",
    )
    p.add_argument(
        "--formats",
        type=_formats,
        default=list(FORMATS),
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
    _override_resume(p)
    _common(p)

    p = sub.add_parser("report", help="report.md with PNG plots of a finished run or sweep")
    p.add_argument(
        "dir", type=Path, help="a run folder (the --out of `mfclr run`) or a sweep folder"
    )
    p.add_argument("--quiet", action="store_true", help="no log lines")
    return parser


def _config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    overrides = list(args.overrides)
    if args.strict:
        overrides.append("data.strict=true")
    cfg = load_config(args.config, args.preset, overrides or None)
    return cfg.with_overrides(extra) if extra else cfg


def _print_table(result: dict[str, Any]) -> None:
    from mfclr.report import results_table

    print(
        f"\nTest split of {result['dataset']}: {result['test_tracks']} tracks, "
        f"{len(result['label_names'])} classes\n"
    )
    print(results_table(result["rows"]))


def _cmd_run(args: argparse.Namespace) -> None:
    from mfclr.pipeline import run_seeds

    cfg = _config(args)
    check_writable_dir(args.out, "--out")
    result = run_seeds(cfg, args.out, args.formats, args.seeds, fresh=args.fresh,
                       progress=not args.quiet, override_resume=args.override_resume)  # fmt: skip
    _print_table(result)
    print(f"\ncheckpoints: {args.out / 'pretrain'}/<format>/ (encoder.pt, checkpoints/last.pt)")
    print(f"embeddings:  {result['embeddings']}")
    print(f"results:     {result['results_json']}  {result['results_md']}")


def _cmd_pretrain(args: argparse.Namespace) -> None:
    if args.workers == 0:
        if args.use_gpu or args.storage:
            raise ConfigError("--use-gpu and --storage need Ray Train workers; add --workers N")
        from mfclr.runner import pretrain_local

        cfg = _config(args)
        check_writable_dir(args.out, "--out")
        paths = pretrain_local(cfg, args.format, args.out, resume=not args.fresh,
                               progress=not args.quiet,
                               override_resume=args.override_resume)  # fmt: skip
        for fmt, path in paths.items():
            print(f"{fmt} encoder: {path}")
        return
    if args.fresh and args.out.exists():
        raise ConfigError(f"--fresh with --workers: remove '{args.out}' or choose another --out")
    if args.override_resume:
        raise ConfigError("--override-resume applies to local runs; drop it or --workers")
    cfg = _config(args)
    out = check_writable_dir(args.out, "--out").resolve()
    if args.storage and "://" not in args.storage:
        check_writable_dir(Path(args.storage), "--storage")
    from mfclr.launch import export_encoder, launch

    result = launch(
        cfg,
        args.format,
        workers=args.workers,
        use_gpu=True if args.use_gpu else None,
        storage_path=args.storage or str(out.parent),
        name=out.name,
        max_failures=args.max_failures,
        tracking_dir=str(out),
        group=out.name,
    )
    print(f"run: {result.path}  ({result.metrics.get('epochs_done')} epochs)")
    print(f"encoder: {export_encoder(result, args.format)}")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from mfclr.sweep import load_sweep

    spec, base = load_sweep(args.file, args.overrides)
    if args.check:
        print(
            f"sweep file '{args.file}' is valid: {spec.name}, formats {spec.formats}, "
            f"{spec.budget.trials} trials x {spec.budget.epochs} epochs per format"
        )
        return
    # Before Ray starts: a local storage root below a file fails deep inside pyarrow otherwise.
    out = check_writable_dir(args.out / spec.name, "--out")
    storage = args.storage or spec.storage
    if storage and "://" not in storage:
        what = "--storage" if args.storage else f"the storage: of '{args.file}'"
        check_writable_dir(Path(storage), what)
    for folder in (out, out / "best"):
        clean_stale_temps(folder)
    from mfclr.tune import SweepInterrupted, print_summary, run_sweep

    try:
        result = run_sweep(
            spec,
            base,
            args.out,
            storage=args.storage,
            resume=args.resume,
            verbose=0 if args.quiet else 1,
        )
    except (SweepInterrupted, KeyboardInterrupt) as err:
        print(
            f"mfclr: {err or 'sweep interrupted'}; continue with: mfclr sweep {args.file} --resume",
            file=sys.stderr,
        )
        sys.exit(130)
    print_summary(result)


def _cmd_probe(args: argparse.Namespace) -> None:
    from mfclr.evaluate import evaluate, load_frozen
    from mfclr.report import write_results

    extra: dict[str, Any] = {}
    if args.fusion:
        extra["probe.fusions"] = args.fusion
    if args.head:
        extra["probe.heads"] = args.head
    cfg = _config(args, extra)
    check_writable_dir(args.out, "--out")
    for folder in (args.out, args.out / "embeddings"):
        clean_stale_temps(folder)
    encoders = {}
    for fmt, path in args.encoder:
        frozen = load_frozen(path, fmt)
        if frozen.fmt in encoders:
            raise ConfigError(f"two encoders for format '{frozen.fmt}'; pass one per format")
        encoders[frozen.fmt] = frozen
    rows = evaluate(cfg, encoders, args.out)
    from mfclr.data import load_dataset

    data = load_dataset(cfg.data, "probe")
    extra_out = {
        "dataset": data.name,
        "test_tracks": len(data.splits["test"]),
        "label_names": data.label_names,
        "checkpoints": {f: e.source for f, e in encoders.items()},
    }
    json_path, md_path = write_results(args.out, rows, extra_out)
    _print_table({**extra_out, "rows": rows})
    print(f"\nresults: {json_path}  {md_path}")


def _cmd_embed(args: argparse.Namespace) -> None:
    from mfclr.data import load_dataset
    from mfclr.evaluate import SPLITS, embed_splits, load_frozen
    from mfclr.probe.embed import save_embeddings

    cfg = _config(args)
    if args.out.is_dir():
        raise ConfigError(
            f"--out '{args.out}' is a folder; embed writes one .npz file: "
            f"pass a file path such as {args.out / 'embeddings.npz'}"
        )
    check_writable_dir(args.out.parent, "the folder of --out")
    fmt, path = args.encoder
    frozen = load_frozen(path, fmt)
    data = load_dataset(cfg.data, "probe")
    feats = embed_splits(frozen, data, cfg, __import__("torch").device("cpu"))
    save_embeddings(
        args.out,
        feats,
        {s: data.splits[s].labels for s in SPLITS},
        data.label_names,
        {s: data.splits[s].track_ids for s in SPLITS},
        {"format": frozen.fmt, "encoder": str(path)},
    )
    print(f"embeddings: {args.out} ({', '.join(f'{s} {v.shape}' for s, v in feats.items())})")


def _cmd_data(args: argparse.Namespace) -> None:
    from mfclr.data.summary import format_summary
    from mfclr.pipeline import prepare

    for role, info in prepare(_config(args)).items():
        print(format_summary(role, info, detailed=args.action == "info"))


def _cmd_report(args: argparse.Namespace) -> None:
    from mfclr.report_dir import REPORT_DIR, write_report

    path = write_report(args.dir)
    print(f"report: {path}  (plots in {path.parent / REPORT_DIR})")


def _cmd_config(args: argparse.Namespace) -> None:
    import yaml

    print(yaml.safe_dump(_config(args).to_dict(), sort_keys=False), end="")
    # As YAML comments, so the output stays a valid config file.
    print("# dataset kinds (data.probe.kind, data.pretrain.kind):")
    width = max(map(len, DATASET_KINDS))
    for kind, what in DATASET_KINDS.items():
        print(f"#   {kind:<{width}}  {what}")


COMMANDS = {
    "run": _cmd_run,
    "pretrain": _cmd_pretrain,
    "sweep": _cmd_sweep,
    "probe": _cmd_probe,
    "embed": _cmd_embed,
    "data": _cmd_data,
    "config": _cmd_config,
    "report": _cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname).1s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        COMMANDS[args.command](args)
    except (MfclrError, FloatingPointError) as err:  # the loop's NaN loss is the user's to fix
        print(f"mfclr: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a filesystem failure no check caught: still one line
        where = f" '{err.filename}'" if err.filename else ""
        print(
            f"mfclr: error: {err.strerror or err}{where}; check the path, its permissions and "
            "the free space",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            "mfclr: interrupted; checkpoints written so far are intact; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
