"""Errors caused by user input: the CLI prints their message as one line and exits non-zero."""


class InputError(ValueError):
    """A user input (path, raster, label file, parameter) is unusable; the message says why."""
