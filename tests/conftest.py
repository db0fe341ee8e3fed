"""pytest: this folder (tests/) is on sys.path (conftest's folder, prepend import mode), so
tests in sub-folders import the shared helpers (helpers.py, data_fixtures.py, faults.py,
wandb_files.py) by name. Test file names are unique across sub-folders for the same reason."""
