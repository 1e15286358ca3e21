"""Prefect tasks retry I/O errors only: bad input and a full disk fail at once."""

from __future__ import annotations

import errno

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
