"""One module per screen; registered in cspine_tui/registry.py SCREENS."""
