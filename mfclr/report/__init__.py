"""Results and reports: results.json/md of a probe table (results.py), the markdown pieces
(markdown.py), report.md of a finished run or sweep folder (document.py) and its plots
(plots.py). Import the module you need: this package imports nothing on its own."""
