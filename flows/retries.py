"""Task retries: transient I/O errors retry with backoff; bad input fails the task at once."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff


def retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task run only for I/O errors (storage, network: OSError), never for bad
    input (InputError, ConvLoRAInputError and other ValueErrors), which fails the same again."""
    return isinstance(state.data, OSError)


IO_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),
    "retry_condition_fn": retry_on_io_error,
}
