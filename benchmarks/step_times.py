"""Training-step time per format with bf16 autocast, channels_last and torch.compile on and off.

One step = forward of both views (one batch of 2 x batch_size) through the format's encoder and
projector, NT-Xent, backward and an Adam step, on one ready batch of augmented views (no data
loading, no augmentation in the timed loop). Built from `mfclr.config`, `mfclr.encoders`,
`mfclr.heads`, `mfclr.loss` and `mfclr.augment` only, the same pieces `mfclr pretrain` steps with.

Every combination of the switches runs side by side in one process (`--grid full`: bf16 x
channels_last x compile for the spectrogram, bf16 x compile for audio, where channels_last does
not apply; `--grid each`: all off, each one on alone, all on). Each finished row is printed at
once as `{"row": {...}}`; the last line is one JSON object with every row, so a caller that has to
stop the run early still has the rows done so far.

    python benchmarks/step_times.py --device cuda                   # paper-sized config defaults
    python benchmarks/step_times.py --preset tiny --device cpu --steps 2 --compile-backend eager
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import platform
import statistics
import sys
import time
import traceback
from typing import Any

import torch
from torch import nn

from mfclr.config import DEFAULT_FORMATS as FORMATS
from mfclr.config import Config, load_config, preset_names
from mfclr.formats import build_augment, build_encoder
from mfclr.heads import Projector
from mfclr.loss import nt_xent

NO_PRESET = "defaults"  # the config defaults alone (the paper-sized setup), as throughput.py
SWITCHES = ("bf16", "channels_last", "compile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=NO_PRESET, choices=[*preset_names(), NO_PRESET])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (config's)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per combination")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    p.add_argument("--grid", choices=["full", "each"], default="full")
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the grid")
    backends = "torch.compile backend (eager, aot_eager: graph capture only, quick to build)"
    p.add_argument("--compile-backend", default="inductor", help=backends)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be at least 1")
    return args


def combinations(fmt: str, grid: str, with_compile: bool = True) -> list[dict[str, bool]]:
    """The switch settings to time for `fmt`; channels_last only applies to the spectrogram,
    compile is left off everywhere when not `with_compile`."""
    names = tuple(
        n
        for n in SWITCHES
        if (n != "channels_last" or fmt == "spectrogram") and (with_compile or n != "compile")
    )
    if grid == "full":
        combos = [
            dict(zip(names, on, strict=True))
            for on in itertools.product([False, True], repeat=len(names))
        ]
    else:
        combos = [dict.fromkeys(names, False)]
        combos += [{n: n == one for n in names} for one in names]
        combos.append(dict.fromkeys(names, True))
    return [{n: c.get(n, False) for n in SWITCHES} for c in combos]


def ready_views(cfg: Config, fmt: str, device: torch.device) -> torch.Tensor:
    """One step's augmented views (2 x batch_size, ...) of seeded noise, made once."""
    g = torch.Generator(device=device).manual_seed(cfg.train.seed)
    waves = 0.1 * torch.randn(
        2 * cfg.train.batch_size, cfg.data.crop_samples, generator=g, device=device
    )
    with torch.no_grad():
        return build_augment(fmt, cfg).to(device)(waves, generator=g)


class Stepper:
    """Encoder + projector + NT-Xent + Adam on fixed views, with the given switches."""

    def __init__(self, cfg: Config, fmt: str, views: torch.Tensor, switches: dict[str, bool],
                 backend: str) -> None:  # fmt: skip
        torch.manual_seed(cfg.train.seed)
        encoder = build_encoder(fmt, cfg)
        m = cfg.model
        model = nn.Sequential(
            encoder, Projector(encoder.num_features, m.projector_hidden, m.projector_dim)
        ).to(views.device)
        self.views = views
        if switches["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
            self.views = views.contiguous(memory_format=torch.channels_last)
        tc = cfg.train
        self.opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.model = torch.compile(model, backend=backend) if switches["compile"] else model
        self.model.train()
        self.device, self.b, self.temperature = views.device, tc.batch_size, tc.temperature
        self.bf16 = switches["bf16"]

    def step(self) -> float:
        """One optimizer step; its wall time in ms (CUDA work included)."""
        sync(self.device)
        t0 = time.perf_counter()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            z = self.model(self.views).float()
        loss = nt_xent(z[: self.b], z[self.b :], temperature=self.temperature)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        sync(self.device)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"the loss became {loss.item()}")
        return 1e3 * (time.perf_counter() - t0)


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_combo(cfg: Config, fmt: str, views: torch.Tensor, switches: dict[str, bool],
               args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """One row: the median step time over `--steps` after `--warmup` steps; an error message
    instead of figures when this combination fails (the others still run)."""
    row: dict[str, Any] = {"format": fmt, **switches, "error": None}
    device = views.device
    torch.compiler.reset()  # each compiled combination starts from an empty dynamo cache
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        t0 = time.perf_counter()
        stepper = Stepper(cfg, fmt, views, switches, args.compile_backend)
        for _ in range(args.warmup):
            stepper.step()
        row["warmup_s"] = round(time.perf_counter() - t0, 3)
        times = [stepper.step() for _ in range(args.steps)]
    except Exception as err:  # noqa: BLE001 - one failing combination is a row, not the end
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        traceback.print_exc(file=sys.stderr)
        return row
    row["ms_per_step"] = round(statistics.median(times), 3)
    row["ms_per_step_min"] = round(min(times), 3)
    if device.type == "cuda":
        row["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return row


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """speedup = the all-off row's ms per step / this row's, per format."""
    base = {
        r["format"]: r.get("ms_per_step")
        for r in rows
        if not any(r[s] for s in SWITCHES) and r.get("ms_per_step")
    }
    for r in rows:
        ref, ms = base.get(r["format"]), r.get("ms_per_step")
        r["speedup_vs_all_off"] = round(ref / ms, 3) if ref and ms else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sets: dict[str, Any] = {"train.device": device.type}
    if args.batch_size is not None:
        sets["train.batch_size"] = args.batch_size
    base = load_config(preset=None if args.preset == NO_PRESET else args.preset)
    cfg = base.with_overrides(sets).with_overrides(args.overrides)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for fmt in args.formats:
        views = ready_views(cfg, fmt, device)
        for switches in combinations(fmt, args.grid, not args.no_compile):
            rows.append(time_combo(cfg, fmt, views, switches, args))
            print(json.dumps({"row": rows[-1]}), flush=True)
    add_speedups(rows)
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "preset": args.preset,
        "batch_size": cfg.train.batch_size,
        "crop_samples": cfg.data.crop_samples,
        "steps": args.steps,
        "warmup": args.warmup,
        "compile_backend": args.compile_backend,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": rows,
        "errors": sum(r["error"] is not None for r in rows),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv))))


if __name__ == "__main__":
    main()
