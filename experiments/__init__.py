"""Research instruments: they measure recipes (dataset panels, learning curves, speed of learning,
fusion re-probes, pooled comparisons). Run them from the repository root as modules, e.g.
`python -m experiments.panel`; their results live in experiments/results/<claim>/."""
