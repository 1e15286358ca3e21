"""Runs on Dask workers before any Prefect import there: must import nothing but the stdlib."""

import os


def set_env(values: dict[str, str]) -> None:
    """Set environment variables in this (worker) process."""
    os.environ.update(values)
