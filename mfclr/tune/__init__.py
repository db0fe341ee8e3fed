"""Sweeps with Ray Tune + Optuna: the sweep file (spec.py, no Ray), one format's study and its
best trial (search.py), the whole sweep and its final probe (sweep.py)."""
