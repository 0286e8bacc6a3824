"""The one exception type for errors a user can cause (a bad file, a missing weight, a malformed CSV)."""


class CspineError(Exception):
    """A user-facing error: the message says what went wrong, where, and what to do.

    The CLI prints it on one line and exits non-zero; the TUI shows it and keeps running.
    """
