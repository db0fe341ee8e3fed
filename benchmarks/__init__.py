"""Performance benchmarks: throughput, step times, Ray cost, search cost, predict speed. Run
them from the repository root as modules, e.g. `python -m benchmarks.throughput`; their results
live in benchmarks/results/<claim>/ beside a MANIFEST."""
