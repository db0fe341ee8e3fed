"""Pretraining: the model (model.py), the one loop (loop.py), a local run folder (local.py), the
Ray Train adapter (ray.py, the only Ray importer here) and encoder export (export.py). Import
the module you need: this package imports nothing on its own, so the loop runs without Ray."""
