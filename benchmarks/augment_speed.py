"""Throughput of the batched torch audio chain vs audiomentations per clip; prints one JSON line.

python benchmarks/augment_speed.py [--batch 32] [--seconds 5] [--sample-rate 22050]
"""

from __future__ import annotations

import argparse
import json

from mfclr.augment.reference import benchmark_augment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    result = benchmark_augment(
        args.batch, args.seconds, args.sample_rate, args.repeats, threads=args.threads
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
