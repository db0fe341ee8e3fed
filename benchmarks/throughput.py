"""Is the input pipeline the bottleneck? Measured side by side; the last line is one JSON object.

1. Augmentation: the batched torch audio chain on the training device vs the audiomentations
   reference per clip on one CPU core (same chain, every transform applied, the preset's crops of
   the real decoded cache). On CPU both get one core; on a GPU, the GPU vs one core.
2. Per format, end-to-end vs bare: the real `mfclr.train.pretrain` loop (memmap crops ->
   DataLoader -> on-device augmentation [+ mel] -> model -> NT-Xent -> Adam), samples/s over the
   epochs after a warm-up epoch, vs the same model and optimizer stepping on one ready batch of
   augmented views (timed before and after the end-to-end run, in chunks of one epoch's steps).
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

from mfclr.augment import build_augment
from mfclr.augment.reference import AudiomentationsChain
from mfclr.config import FORMATS, Config, load_config, preset_names
from mfclr.data import PairDataset, load_dataset
from mfclr.loss import nt_xent
from mfclr.train import build_model, pretrain, resolve_device

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
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
    """Polls GPU utilisation (%) in a thread while in its `with` block; `mean()` is None on CPU
    or when no reader works. `restart()` drops the samples so far (e.g. after a warm-up)."""

    def __init__(self, device: torch.device, every_s: float = 0.25):
        self.read, self.every_s = _gpu_util_reader(device), every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.every_s):
            # A failed poll is a missing sample, not an error.
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

    def restart(self) -> None:
        self.samples = []

    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


# ----------------------------------------------------------------------------- measurements


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="demo", choices=[*preset_names(), NO_PRESET])
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


def build_bench_config(args: argparse.Namespace, device: torch.device) -> tuple[Config, int]:
    """The preset with the benchmark's settings; also the timed epochs after the warm-up one.

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
    per_epoch = min(args.steps, n_train // min(cfg.train.batch_size, n_train))
    if per_epoch == 0:
        raise SystemExit(f"the train split has {n_train} tracks: lower --batch-size")
    timed_epochs = math.ceil(args.steps / per_epoch)
    cfg = cfg.with_overrides(
        {"train.max_steps_per_epoch": per_epoch, "train.epochs": 1 + timed_epochs}
    )
    return cfg, timed_epochs


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
    """Clips/s of the audio chain (torch on `device` vs audiomentations on one CPU core) with
    every transform applied, on one step's worth of views (2 x batch) of real crops; and the
    spectrogram chain's clips/s on `device` as configured."""
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
    xd = x.to(device)
    if device.type != "cpu":
        fast = _clips_per_s(build_augment("audio", chain_cfg).to(device), xd, repeats)
    spec = _clips_per_s(build_augment("spectrogram", cfg).to(device), xd, repeats)
    return {
        "augment_torch_clips_per_s_audio": fast,
        "augment_reference_clips_per_s_audio": ref,
        "augment_speedup_audio": fast / ref,
        "augment_clips_per_s_spectrogram": spec,
    }


def measure_bare(cfg: Config, fmt: str, device: torch.device, chunks: int) -> dict[str, Any]:
    """Pairs/s of model forward + backward + Adam step on one ready batch of augmented views,
    exactly as `pretrain` steps (same model, seed, autocast, channels_last, compile, loss).

    Timed in `chunks` runs of `train.max_steps_per_epoch` steps, the length of one timed epoch
    of the end-to-end run, so the two are compared on equal footing; one rate per chunk."""
    b, tc = cfg.train.batch_size, cfg.train
    g = torch.Generator(device=device).manual_seed(tc.seed)
    pair = real_batch(cfg, 2 * b).to(device)
    with torch.no_grad():
        views = build_augment(fmt, cfg).to(device)(pair, generator=g)
    torch.manual_seed(tc.seed)
    model: torch.nn.Module = build_model(cfg, fmt).to(device)
    if fmt == "spectrogram" and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        views = views.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    if tc.compile:
        model = torch.compile(model)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
    model.train()

    def step() -> None:
        with amp:
            z = model(views).float()
        loss = nt_xent(z[:b], z[b:], temperature=tc.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up: allocator, cuDNN autotuning, compilation
        step()
    rates, n = [], tc.max_steps_per_epoch or 1
    with GpuUtilSampler(device) as util:
        for _ in range(chunks):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            sync(device)
            rates.append(n * b / (time.perf_counter() - t0))
    return {"rates": rates, "gpu_utilization": util.mean()}


def measure_end_to_end(cfg: Config, fmt: str, device: torch.device) -> dict[str, Any]:
    """Pairs/s of the real pretraining loop, one rate per epoch after the first (the warm-up)."""
    epochs: list[dict[str, Any]] = []
    with GpuUtilSampler(device) as util:

        def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
            epochs.append(metrics)
            if len(epochs) == 1:
                util.restart()  # GPU utilisation over the timed epochs only

        pretrain(cfg, fmt, report, device=device, progress=False)
    return {"rates": [m["samples_per_s"] for m in epochs[1:]], "gpu_utilization": util.mean()}


def _mean_rate(rates: list[float]) -> float:
    # Every rate covers the same number of pairs: the overall rate is the harmonic mean.
    return statistics.harmonic_mean(rates)


def measure_format(cfg: Config, fmt: str, device: torch.device, epochs: int) -> dict[str, Any]:
    """Bare, end-to-end, bare again (alternating, so drifting load hits both alike).

    pipeline_efficiency is the fastest timed epoch over the fastest bare chunk of as many
    steps: on a shared machine the fastest run is the one least disturbed, and taking the best
    of twice as many bare chunks errs on the low side. The `_mean` figure uses the mean rates.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = measure_bare(cfg, fmt, device, epochs)
    e2e = measure_end_to_end(cfg, fmt, device)
    after = measure_bare(cfg, fmt, device, epochs)
    bare = before["rates"] + after["rates"]
    out = {
        f"e2e_samples_per_s_{fmt}": _mean_rate(e2e["rates"]),
        f"bare_samples_per_s_{fmt}": _mean_rate(bare),
        f"e2e_samples_per_s_{fmt}_epochs": e2e["rates"],
        f"bare_samples_per_s_{fmt}_chunks": bare,
        f"pipeline_efficiency_{fmt}": max(e2e["rates"]) / max(bare),
        f"pipeline_efficiency_{fmt}_mean": _mean_rate(e2e["rates"]) / _mean_rate(bare),
        f"gpu_utilization_{fmt}": e2e["gpu_utilization"],
        f"gpu_utilization_bare_{fmt}": before["gpu_utilization"],
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
    cfg, timed_epochs = build_bench_config(args, device)
    result = environment(cfg, args, device)
    if not result["malloc_env_set"] and device.type == "cpu":
        print(
            "warning: MALLOC_MMAP_MAX_/MALLOC_TRIM_THRESHOLD_ are not set; CPU steps run "
            "1.5-1.8x slower (use `make bench`)",
            file=sys.stderr,
        )
    t0 = time.perf_counter()
    result.update(measure_augment(cfg, device, args.augment_repeats))
    print(f"augmentation done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    for fmt in args.formats:
        result.update(measure_format(cfg, fmt, device, timed_epochs))
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
