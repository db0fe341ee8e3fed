"""Is the input pipeline the bottleneck? Measured side by side; the last line is one JSON object.

1. Augmentation: the batched torch audio chain on the training device vs the audiomentations
   reference per clip on one CPU core (same chain, every transform applied, the preset's crops of
   the real decoded cache). On CPU both get one core; on a GPU, the GPU vs one core.
2. Per format, end-to-end vs bare: the real `mfclr.train.pretrain` loop (memmap crops ->
   DataLoader -> on-device augmentation [+ mel] -> model -> NT-Xent -> Adam), samples/s over the
   epochs after a warm-up epoch, vs the same model and optimizer stepping on one ready batch of
   augmented views, timed between the epochs in chunks of one epoch's steps.
   pipeline_efficiency = end-to-end / bare, fastest epoch over fastest chunk (1.0: the input
   pipeline costs nothing); `_mean` variants use the mean rates.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 \\
    python benchmarks/throughput.py [--preset demo] [--steps 15] [--batch-size 32] [--threads 2]

`make bench` runs it with those allocator settings (they make CPU steps 1.5-1.8x faster).
Samples are positive pairs (two views each), as in the training metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import torch

from mfclr.augment.reference import AudiomentationsChain
from mfclr.config import DEFAULT_FORMATS as FORMATS
from mfclr.config import Config, load_config, preset_names
from mfclr.data import PairDataset, load_dataset, make_loader
from mfclr.distributed import resolve_device
from mfclr.formats import build_augment
from mfclr.loss import nt_xent
from mfclr.malloc import MALLOC_ENV
from mfclr.train.loop import pretrain
from mfclr.train.model import build_model

NO_PRESET = "defaults"  # the config defaults alone (the paper-sized setup)


# ----------------------------------------------------------------------------- device helpers


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock timings cover it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _gpu_util_reader(device: torch.device) -> Any:
    """A () -> percent callable for `device`'s GPU utilisation, or None if nothing can read it.

    torch.cuda.utilization needs the NVML bindings (pynvml); nvidia-smi is the fallback."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        torch.cuda.utilization(index)
        return lambda: float(torch.cuda.utilization(index))
    except Exception:  # noqa: BLE001, S110 - no pynvml or no NVML: try nvidia-smi
        pass
    cmd = ["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader"]

    def smi() -> float:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True)
        return float(out.stdout.strip().split()[0])

    try:
        smi()
        return smi
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


class GpuUtilSampler:
    """Polls GPU utilisation (%) in a thread while in its `with` block, keeping the samples
    taken while `active`; `mean()` is None on CPU or when no reader works."""

    def __init__(self, device: torch.device, active: bool = True, every_s: float = 0.25):
        self.read, self.every_s, self.active = _gpu_util_reader(device), every_s, active
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.every_s):
            # A failed poll is a missing sample, not an error.
            if self.active:
                with contextlib.suppress(Exception):
                    self.samples.append(self.read())

    def __enter__(self) -> GpuUtilSampler:
        if self.read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


# ----------------------------------------------------------------------------- measurements


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="demo", choices=[*preset_names(), NO_PRESET],
                   help=f"an mfclr preset, or '{NO_PRESET}': the config defaults alone, the "
                   "paper-sized setup (what mfclr runs with no --preset)")  # fmt: skip
    p.add_argument("--steps", type=int, default=15, help="timed optimizer steps per measurement")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (preset's)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (all cores)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 autocast on CUDA, the config's on CPU")  # fmt: skip
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--workers", type=int, default=None, help="data.loader_workers (config's)")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    p.add_argument("--augment-repeats", type=int, default=3, help="timed augmentation calls")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config overrides, as `mfclr --set`")  # fmt: skip
    args = p.parse_args(argv)
    if args.steps < 1 or args.augment_repeats < 1:
        p.error("--steps and --augment-repeats must be at least 1")
    return args


def build_bench_config(args: argparse.Namespace, device: torch.device) -> Config:
    """The preset with the benchmark's settings: no validation, and a warm-up epoch plus enough
    capped epochs for `--steps` timed steps.

    Steps per epoch are capped by the train split (drop_last batches), so `--steps` timed steps
    may span several epochs; epoch 1 is the warm-up and is not timed.
    """
    base = load_config(preset=None if args.preset == NO_PRESET else args.preset)
    sets: dict[str, Any] = {"train.eval_every": 0, "train.device": device.type}
    if args.batch_size is not None:
        sets["train.batch_size"] = args.batch_size
    if args.workers is not None:
        sets["data.loader_workers"] = args.workers
    if args.precision != "auto":
        sets["train.precision"] = args.precision
    elif device.type == "cuda":
        sets["train.precision"] = "bf16"
    if args.compile:
        sets["train.compile"] = True
    cfg = base.with_overrides(sets).with_overrides(args.overrides)
    n_train = len(load_dataset(cfg.data, "pretrain").splits["train"])
    if cfg.train.batch_size > n_train:  # pretrain would shrink the batch; bare would not
        raise SystemExit(
            f"--batch-size {cfg.train.batch_size} is larger than the train split "
            f"({n_train} tracks); use at most {n_train}"
        )
    per_epoch = min(args.steps, n_train // cfg.train.batch_size)
    timed_epochs = math.ceil(args.steps / per_epoch)
    cfg = cfg.with_overrides(
        {"train.max_steps_per_epoch": per_epoch, "train.epochs": 1 + timed_epochs}
    )
    return cfg


def real_batch(cfg: Config, n: int) -> torch.Tensor:
    """(n, crop_samples) float32: both crops of the first ceil(n / 2) pairs of the train split."""
    split = load_dataset(cfg.data, "pretrain").splits["train"]
    pairs = PairDataset(split, cfg.data.crop_samples, seed=cfg.train.seed)
    rows = [pairs[i % len(pairs)] for i in range(math.ceil(n / 2))]
    return torch.cat(rows)[:n]


def _clips_per_s(aug: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    # Best of `repeats` calls after a warm-up: on a shared machine the fastest is the stable one.
    g = torch.Generator(device=x.device).manual_seed(0)
    aug(x, generator=g)
    best = math.inf
    for _ in range(repeats):
        sync(x.device)
        t0 = time.perf_counter()
        aug(x, generator=g)
        sync(x.device)
        best = min(best, time.perf_counter() - t0)
    return x.shape[0] / best


def measure_augment(cfg: Config, device: torch.device, repeats: int) -> dict[str, float]:
    """Clips/s of the audio chain, torch on `device` vs audiomentations on one CPU core, with
    every transform applied, on one step's worth of views (2 x batch) of real crops."""
    every = {f"augment.audio.{n}.p": 1.0 for n in ("noise", "gain", "filter", "pitch")}
    chain_cfg = cfg.with_overrides(every)
    x = real_batch(cfg, 2 * cfg.train.batch_size)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # one core for the reference (numpy/scipy run single-threaded)
        ref_chain = AudiomentationsChain(chain_cfg.augment.audio, cfg.data.sample_rate)
        ref = _clips_per_s(ref_chain, x, repeats)
        if device.type == "cpu":  # same cores: the torch chain gets the same one core
            fast = _clips_per_s(build_augment("audio", chain_cfg), x, repeats)
    finally:
        torch.set_num_threads(threads)
    if device.type != "cpu":
        fast = _clips_per_s(build_augment("audio", chain_cfg).to(device), x.to(device), repeats)
    return {
        "augment_torch_clips_per_s_audio": fast,
        "augment_reference_clips_per_s_audio": ref,
        "augment_speedup_audio": fast / ref,
    }


def measure_input(
    cfg: Config, device: torch.device, formats: list[str], repeats: int
) -> dict[str, float]:
    """What the input side costs per training step, in ms, at the training threads:
    loading one batch (memmap crops -> DataLoader -> device, as `pretrain` does; mean over
    `repeats` epochs' worth of batches) and each format's configured augmentation of 2 x batch
    views (best of `repeats`)."""
    b, n = cfg.train.batch_size, cfg.train.max_steps_per_epoch or 1
    split = load_dataset(cfg.data, "pretrain").splits["train"]
    pairs = PairDataset(split, cfg.data.crop_samples, seed=cfg.train.seed)
    loader = make_loader(
        pairs, b, shuffle=True, seed=0, workers=cfg.data.loader_workers, drop_last=True
    )
    t0 = time.perf_counter()
    for epoch in range(repeats):
        pairs.set_epoch(epoch)
        for _, pair in zip(range(n), loader, strict=False):
            pair.to(device, non_blocking=True)
    sync(device)
    out = {"load_ms_per_step": 1e3 * (time.perf_counter() - t0) / (repeats * n)}
    x = real_batch(cfg, 2 * b).to(device)
    for fmt in formats:
        rate = _clips_per_s(build_augment(fmt, cfg).to(device), x, repeats)
        out[f"augment_ms_per_step_{fmt}"] = 1e3 * x.shape[0] / rate
    return out


class BareSteps:
    """Model forward + backward + Adam step on one ready batch of augmented views, exactly as
    `pretrain` steps (same model, seed, autocast, channels_last, compile, loss), without the
    data loader and the augmentation."""

    def __init__(self, cfg: Config, fmt: str, device: torch.device):
        tc, self.b, self.device = cfg.train, cfg.train.batch_size, device
        self.steps_per_chunk, self.temperature = tc.max_steps_per_epoch or 1, tc.temperature
        g = torch.Generator(device=device).manual_seed(tc.seed)
        pair = real_batch(cfg, 2 * self.b).to(device)
        with torch.no_grad():
            self.views = build_augment(fmt, cfg).to(device)(pair, generator=g)
        torch.manual_seed(tc.seed)
        model: torch.nn.Module = build_model(cfg, fmt).to(device)
        if fmt == "spectrogram" and device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
            self.views = self.views.contiguous(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.model = torch.compile(model) if tc.compile else model
        self.model.train()
        self.amp = torch.autocast(device.type, torch.bfloat16, enabled=tc.precision == "bf16")
        for _ in range(2):  # warm-up: allocator, cuDNN autotuning, compilation
            self.step()

    def step(self) -> None:
        with self.amp:
            z = self.model(self.views).float()
        loss = nt_xent(z[: self.b], z[self.b :], temperature=self.temperature)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def chunk(self) -> float:
        """Pairs/s over as many steps as one timed epoch of the end-to-end run."""
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(self.steps_per_chunk):
            self.step()
        sync(self.device)
        return self.steps_per_chunk * self.b / (time.perf_counter() - t0)


def _mean_rate(rates: list[float]) -> float:
    # Every rate covers the same number of pairs: the overall rate is the harmonic mean.
    return statistics.harmonic_mean(rates)


def measure_format(cfg: Config, fmt: str, device: torch.device) -> dict[str, Any]:
    """End-to-end and bare pairs/s, interleaved: the real `pretrain` loop runs its epochs and,
    between them (in its `report` callback, outside its epoch timer), a bare chunk of as many
    steps runs, so drifting load hits both alike. Epoch 1 is the end-to-end warm-up.

    pipeline_efficiency is the fastest timed epoch over the fastest bare chunk: on a shared
    machine the fastest run is the least disturbed one, and the bare side has one chunk more to
    pick from, so it errs on the low side. The `_mean` figure uses the mean rates.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bare = BareSteps(cfg, fmt, device)
    e2e_rates: list[float] = []
    bare_rates: list[float] = []
    with GpuUtilSampler(device, active=False) as util, GpuUtilSampler(device, False) as b_util:

        def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
            util.active = False
            if metrics["epoch"] > 1:
                e2e_rates.append(metrics["samples_per_s"])
            b_util.active = True
            bare_rates.append(bare.chunk())
            b_util.active = False
            util.active = True  # GPU utilisation over the timed epochs only

        pretrain(cfg, fmt, report, device=device, progress=False)
    e2e, b = max(e2e_rates), max(bare_rates)
    out = {
        f"e2e_samples_per_s_{fmt}": _mean_rate(e2e_rates),
        f"bare_samples_per_s_{fmt}": _mean_rate(bare_rates),
        f"e2e_samples_per_s_{fmt}_epochs": e2e_rates,
        f"bare_samples_per_s_{fmt}_chunks": bare_rates,
        f"pipeline_efficiency_{fmt}": e2e / b,
        f"pipeline_efficiency_{fmt}_mean": _mean_rate(e2e_rates) / _mean_rate(bare_rates),
        # The fastest runs as ms per step: e2e - bare is what the input side costs.
        f"e2e_ms_per_step_{fmt}": 1e3 * cfg.train.batch_size / e2e,
        f"bare_ms_per_step_{fmt}": 1e3 * cfg.train.batch_size / b,
        f"gpu_utilization_{fmt}": util.mean(),
        f"gpu_utilization_bare_{fmt}": b_util.mean(),
    }
    if device.type == "cuda":
        out[f"peak_gpu_mem_mb_{fmt}"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def environment(cfg: Config, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    return {
        "preset": args.preset,
        "device": device.type,
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "batch_size": cfg.train.batch_size,
        "steps": args.steps,
        "steps_per_epoch": cfg.train.max_steps_per_epoch,
        "timed_epochs": cfg.train.epochs - 1,
        "crop_samples": cfg.data.crop_samples,
        "sample_rate": cfg.data.sample_rate,
        "precision": cfg.train.precision,
        "compile": cfg.train.compile,
        "loader_workers": cfg.data.loader_workers,
        "malloc_env_set": all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()),
        "load_avg_1m": os.getloadavg()[0],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 3) if math.isfinite(obj) else None
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement; the result dict (floats rounded, None where not measurable)."""
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = build_bench_config(args, device)
    result = environment(cfg, args, device)
    if not result["malloc_env_set"] and device.type == "cpu":
        print(
            "warning: MALLOC_MMAP_MAX_/MALLOC_TRIM_THRESHOLD_ are not set; CPU steps run "
            "1.5-1.8x slower (use `make bench`)",
            file=sys.stderr,
        )
    t0 = time.perf_counter()
    result.update(measure_augment(cfg, device, args.augment_repeats))
    result.update(measure_input(cfg, device, args.formats, args.augment_repeats))
    print(f"augmentation done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    for fmt in args.formats:
        result.update(measure_format(cfg, fmt, device))
        print(f"{fmt} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    # ru_maxrss is in KiB on Linux: the whole process's peak resident memory.
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peaks = [v for k, v in result.items() if k.startswith("peak_gpu_mem_mb_")]
    result["peak_gpu_mem_mb"] = max(peaks) if peaks else None
    result["load_avg_1m_end"] = os.getloadavg()[0]
    result["seconds"] = time.perf_counter() - t0
    return {k: _rounded(v) for k, v in result.items()}


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv))))


if __name__ == "__main__":
    main()
