"""Prefect tasks retry I/O errors only: bad input and a full disk fail at once."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from prefect.states import Failed
from rasterio.errors import RasterioIOError

from convlora.adapter_files import AdapterMismatchError
from convlora.errors import ConvLoRAInputError
from flows.finetune import evaluate_adapter, train_adapter
from flows.predict import predict_one
from flows.retries import retry_on_io_error
from flows.tile import build_tile_store
from geo.errors import InputError, NoSpaceError
from geo.io.outputs import discard_on_failure

TASKS = [build_tile_store, predict_one, train_adapter, evaluate_adapter]


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (RasterioIOError("/vsis3/bucket/scene.tif: HTTP 503"), True),
        (ConnectionResetError("connection reset by peer"), True),
        (TimeoutError("read timed out"), True),
        (OSError(errno.EIO, "Input/output error"), True),
        (InputError("scene.tif: not a raster GDAL can read"), False),
        (AdapterMismatchError("adapter.json: sam_variant differs"), False),
        (ConvLoRAInputError("class weights: 2 values for 8 classes"), False),
        (NoSpaceError("out: no space left on device"), False),
        (ValueError("a bug, not a hiccup"), False),
        (RuntimeError("a bug, not a hiccup"), False),
    ],
)
def test_only_io_errors_are_retried(error: Exception, retry: bool) -> None:
    for task in TASKS:
        assert task.retries == 2 and task.retry_condition_fn is retry_on_io_error, task.name
        assert retry_on_io_error(task, None, Failed(data=error)) is retry


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_full_disk_a_quota_or_a_file_size_limit_fail_at_once_as_one_line(
    code: int, tmp_path: Path
) -> None:
    """What a write raises when the disk is full, a quota is reached or a file outgrows
    `ulimit -f` (Python ignores SIGXFSZ): the partial output goes, NoSpaceError (one line, not
    retried; a file size limit gave three retries and tracebacks)."""
    partial = tmp_path / ".out.partial"
    partial.mkdir()
    with (
        pytest.raises(NoSpaceError, match="no space left on device"),
        discard_on_failure(partial, tmp_path / "out"),
    ):
        raise OSError(code, os.strerror(code))
    assert not partial.exists()
