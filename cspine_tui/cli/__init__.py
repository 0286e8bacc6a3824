"""The `cspine-tui` command line: the entry point (main.py) and one module per command group."""
