"""One module per screen; registered in cspine_tui/app.py SCREENS."""
