"""What each `mfclr` command does, given its parsed arguments. The heavy modules (torch, Ray)
are imported inside the command that needs them, so `mfclr --help` and `mfclr config` start
fast; nothing here computes anything itself."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from mfclr import signals
from mfclr.config import DATASET_KINDS, SPLITS, Config, load_config
from mfclr.errors import ConfigError, DataError
from mfclr.io import check_writable_dir
from mfclr.locks import folder_lock
from mfclr.report.markdown import results_table


def _config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    overrides = list(args.overrides)
    if args.strict:
        overrides.append("data.strict=true")
    extra = dict(extra or {})
    if getattr(args, "save_row", None):  # a row name is taken as written, never parsed as YAML
        extra["probe.save_row"] = args.save_row
    cfg = load_config(args.config, args.preset, overrides or None)
    return cfg.with_overrides(extra) if extra else cfg


def _print_table(result: dict[str, Any]) -> None:
    print(
        f"\nTest split of {result['dataset']}: {result['test_tracks']} tracks, "
        f"{len(result['label_names'])} classes\n"
    )
    print(results_table(result["rows"]))


def _cmd_run(args: argparse.Namespace) -> None:
    from mfclr.run import run_seeds

    cfg = _config(args)
    check_writable_dir(args.out, "--out")
    result = run_seeds(cfg, args.out, args.formats, args.seeds, fresh=args.fresh,
                       progress=not args.quiet, override_resume=args.override_resume)  # fmt: skip
    _print_table(result)
    print(f"\ncheckpoints: {args.out / 'pretrain'}/<format>/ (encoder.pt, checkpoints/last.pt)")
    print(f"embeddings:  {result['embeddings']}")
    print(f"results:     {result['results_json']}  {result['results_md']}")
    _print_classifier(result, args.out)


def _print_classifier(result: dict[str, Any], out: Path) -> None:
    if result.get("classifier"):
        print(f"classifier:  {result['classifier']} (row {result['classifier_row']}; "
              f"mfclr predict --model {result['classifier']} PATH...)")  # fmt: skip
    elif result.get("seeds"):
        print(f"classifiers: {out}/seed-<s>/classifier.pt (one per seed)")


def _cmd_pretrain(args: argparse.Namespace) -> None:
    if args.workers == 0:
        if args.use_gpu or args.storage:
            raise ConfigError("--use-gpu and --storage need Ray Train workers; add --workers N")
        from mfclr.train.local import pretrain_local

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
    ray_over: dict[str, Any] = {"ray.workers": args.workers}
    if args.max_failures is not None:
        ray_over["ray.max_failures"] = args.max_failures
    cfg = _config(args, ray_over)
    out = check_writable_dir(args.out, "--out").resolve()
    from mfclr.train.ray import TrainRun, check_storage, export_encoder, launch

    if args.storage:
        check_storage(args.storage, "--storage")
    run = TrainRun(storage_path=args.storage or str(out.parent), name=out.name,
                   use_gpu=True if args.use_gpu else None, tracking_dir=str(out),
                   group=out.name)  # fmt: skip
    with folder_lock(out):
        result = launch(cfg, args.format, run)
        print(f"run: {result.path}  ({result.metrics.get('epochs_done')} epochs)")
        print(f"encoder: {export_encoder(result, args.format)}")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from mfclr.tune.spec import load_sweep

    spec, base = load_sweep(args.file, args.overrides)
    if args.check:
        per_trial = (
            f"{spec.budget.epochs} epochs"
            if spec.budget.epochs is not None
            else "the config's budget on each panel dataset"
        )
        print(
            f"sweep file '{args.file}' is valid: {spec.name}, formats {spec.formats}, "
            f"{spec.budget.trials} trials x {per_trial} per format"
        )
        return
    # Before Ray starts: a local storage root below a file fails deep inside pyarrow otherwise.
    check_writable_dir(args.out / spec.name, "--out")
    storage = args.storage or spec.storage
    from mfclr.train.ray import check_storage
    from mfclr.tune.search import SweepInterrupted
    from mfclr.tune.sweep import print_summary, run_sweep

    if storage:
        check_storage(storage, "--storage" if args.storage else f"the storage: of '{args.file}'")

    try:
        result = run_sweep(
            spec,
            base,
            args.out,
            storage=args.storage,
            resume=args.resume,
            override_resume=args.override_resume,
            verbose=0 if args.quiet else 1,
        )
    except SweepInterrupted as err:
        print(f"mfclr: {err}; continue with: mfclr sweep {args.file} --resume", file=sys.stderr)
        sys.exit(130)
    print_summary(result)


def _cmd_probe(args: argparse.Namespace) -> None:
    from mfclr.formats.frozen import load_frozen
    from mfclr.stage import probe_and_report

    extra: dict[str, Any] = {}
    if args.fusion:
        extra["probe.fusions"] = args.fusion
    if args.head:
        extra["probe.heads"] = args.head
    cfg = _config(args, extra)
    check_writable_dir(args.out, "--out")
    encoders = {}
    for fmt, path in args.encoder:
        frozen = load_frozen(path, fmt)
        if frozen.fmt in encoders:
            raise ConfigError(f"two encoders for format '{frozen.fmt}'; pass one per format")
        encoders[frozen.fmt] = frozen
    checkpoints = {f: e.source for f, e in encoders.items()}
    result = probe_and_report(cfg, encoders, args.out, facts={"checkpoints": checkpoints})
    _print_table(result)
    print(f"\nresults: {result['results_json']}  {result['results_md']}")
    _print_classifier(result, args.out)


def _cmd_embed(args: argparse.Namespace) -> None:
    from mfclr.data import load_dataset
    from mfclr.distributed import resolve_device
    from mfclr.formats.frozen import load_frozen
    from mfclr.probe.embed import embed_splits, save_embeddings

    if args.out.is_dir():
        raise ConfigError(
            f"--out '{args.out}' is a folder; embed writes one .npz file: "
            f"pass a file path such as {args.out / 'embeddings.npz'}"
        )
    if args.paths:
        return _embed_files(args)
    cfg = _config(args)
    check_writable_dir(args.out.parent, "the folder of --out")
    fmt, path = args.encoder
    frozen = load_frozen(path, fmt)
    data = load_dataset(cfg.data, "probe")
    feats = embed_splits(frozen, data, cfg, resolve_device(args.device))
    save_embeddings(
        args.out,
        feats,
        {s: data.splits[s].labels for s in SPLITS},
        data.label_names,
        {s: data.splits[s].track_ids for s in SPLITS},
        {"format": frozen.fmt, "encoder": str(path)},
    )
    print(f"embeddings: {args.out} ({', '.join(f'{s} {v.shape}' for s, v in feats.items())})")


def _embed_files(args: argparse.Namespace) -> None:
    """`mfclr embed --encoder E PATH... --out F.npz`: one row per usable file."""
    import numpy as np

    from mfclr.api import load_encoder
    from mfclr.probe.embed import save_embeddings

    if args.preset or args.config or args.overrides:
        raise ConfigError("--preset, --config and --set configure the dataset mode of embed; "
                          "drop them when embedding files (PATH...)")  # fmt: skip
    check_writable_dir(args.out.parent, "the folder of --out")
    fmt, path = args.encoder
    enc = load_encoder(path, device=args.device, fmt=fmt)
    got = enc.embed_files(args.paths, strict=args.strict, progress=not args.quiet)
    if not got.paths:
        raise DataError(f"none of the {len(got.skipped)} audio files could be used")
    n = len(got.paths)
    meta = {"format": enc.format, "encoder": str(path), "sample_rate": enc.sample_rate,
            "max_chunks": enc.encoding.max_chunks, "mode": "files",
            "skipped": [[s.path, s.reason] for s in got.skipped]}  # fmt: skip
    save_embeddings(args.out, {"files": got.feats[enc.format]},
                    {"files": np.full(n, -1)}, [], {"files": got.paths}, meta)  # fmt: skip
    print(f"embeddings: {args.out} (files {got.feats[enc.format].shape}; "
          f"{len(got.skipped)} skipped)")  # fmt: skip


def _cmd_predict(args: argparse.Namespace) -> None:
    from mfclr.api import load_classifier
    from mfclr.report.predictions import (
        check_out,
        predictions_table,
        summary_line,
        write_predictions,
    )

    if args.out is not None:
        check_out(args.out)
        check_writable_dir(args.out.parent, "the folder of --out")
    clf = load_classifier(args.model, device=args.device)
    got = clf.predict_files(args.paths, strict=args.strict, batch_size=args.batch_size,
                            progress=not args.quiet)  # fmt: skip
    skipped = [(s.path, s.reason, s.message) for s in got.skipped]
    if not got.paths:
        raise DataError(f"none of the audio files could be used ({summary_line(0, skipped)})")
    top = got.top(min(args.top_k, len(clf.label_names)))
    row = clf.saved.meta["row"]
    print(f"\n{args.model}: row {row['name']}/{row['head']}, {len(clf.label_names)} labels\n")
    print(predictions_table(got.paths, top))
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in got.seconds.items())
    print(f"\n{summary_line(len(got.paths), skipped)} ({seconds})")
    if args.out is not None:
        model = {"path": str(args.model), **clf.saved.meta}
        write_predictions(args.out, got.paths, top, got.probs.tolist(), clf.label_names,
                          skipped, model)  # fmt: skip
        print(f"predictions: {args.out}")


def _cmd_data(args: argparse.Namespace) -> None:
    from mfclr.data.summary import format_summary, prepare

    for role, info in prepare(_config(args)).items():
        print(format_summary(role, info, detailed=args.action == "info"))


def _cmd_report(args: argparse.Namespace) -> None:
    from mfclr.report.document import REPORT_DIR, write_report

    path = write_report(args.dir)
    print(f"report: {path}  (plots in {path.parent / REPORT_DIR})")


def _cmd_config(args: argparse.Namespace) -> None:
    print(yaml.safe_dump(_config(args).to_dict(), sort_keys=False), end="")
    # As YAML comments, so the output stays a valid config file.
    print("# dataset kinds (data.probe.kind, data.pretrain.kind):")
    width = max(map(len, DATASET_KINDS))
    for kind, what in DATASET_KINDS.items():
        print(f"#   {kind:<{width}}  {what}")


def interrupted_message(args: argparse.Namespace) -> str:
    """The one line a stopped command ends with: what is kept and how to go on."""
    how = f"interrupted by {signals.received()}"
    out = getattr(args, "out", None)
    if args.command in ("run", "pretrain"):
        return (f"{how}; every finished epoch's checkpoint is kept under '{out}'; run the same "
                "command again to resume")  # fmt: skip
    if args.command == "sweep":
        return f"{how}; continue with: mfclr sweep {args.file} --resume"
    return f"{how}; nothing half-written was kept (files are written whole); run it again"


COMMANDS = {
    "run": _cmd_run,
    "pretrain": _cmd_pretrain,
    "sweep": _cmd_sweep,
    "probe": _cmd_probe,
    "embed": _cmd_embed,
    "predict": _cmd_predict,
    "data": _cmd_data,
    "config": _cmd_config,
    "report": _cmd_report,
}
