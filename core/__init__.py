"""cspine-tui engine: everything a study needs, usable from scripts; no UI imports."""
