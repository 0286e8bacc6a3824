"""Subcommands of `cspine-tui`, one module per area; each exposes register(subparsers)."""

# Modules registered in cli.py, in the order their commands appear in --help.
COMMAND_MODULES = [
    "cspine_tui.commands.study",
    "cspine_tui.commands.jobs",
    "cspine_tui.commands.train",
    "cspine_tui.commands.sample",
    "cspine_tui.commands.ingest",
    "cspine_tui.commands.audit",
    "cspine_tui.commands.survey",
    "cspine_tui.commands.screening",
]
