"""Acceptance scripts: `make gpu-check` runs `python -m tools.gpu_check` on a GPU machine."""
