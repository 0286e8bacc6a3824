"""cspine-tui: the Textual app and the command line; both thin layers over ``core``."""
