"""Benchmarks of cspine-tui against the study's own tools (issue #9).

`python -m benchmarks [--quick] [--json] [--only NAME ...]` runs them all through benchmarks/runner.py; each
bench_*.py stays runnable on its own as a script (`.venv/bin/python benchmarks/bench_train.py`).
"""
