"""The library's logs (`geo.*`, `convlora.*`, `flows.*`) are stored with the flow run that made
them, from the flow and from its tasks; outside any run they only go where logging sends them."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import pytest

from flows.predict import summary_markdown
from geo.predict.scene import OUTPUTS

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def stored_logs(flow_run_id: object) -> list[tuple[str, str]]:
    """(logger, message) of the flow run's logs on the server (waiting for the last batch)."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + 20
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        found = [(log.name, log.message) for log in logs]
        if any(name == "geo.tiling" for name, _ in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_library_logs_reach_the_flow_run_on_the_server(prefect_server) -> None:
    from prefect import flow, task

    @task
    def tile() -> None:
        logging.getLogger("geo.tiling").info("wrote 25 tiles")

    @flow
    def job() -> None:
        logging.getLogger("convlora.training").info("step 1/2  loss 0.8  ETA 0m01s")
        logging.getLogger("flows.runtime").debug("not at INFO: stays out")
        tile()

    state = job(return_state=True)
    logs = stored_logs(state.state_details.flow_run_id)
    assert ("convlora.training", "step 1/2  loss 0.8  ETA 0m01s") in logs
    assert ("geo.tiling", "wrote 25 tiles") in logs
    assert not any(name == "flows.runtime" for name, _ in logs)


def test_outside_a_run_library_logs_stay_local(
    prefect_server, caplog: pytest.LogCaptureFixture
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Prefect warns when a record has no run to go to
        with caplog.at_level(logging.INFO, logger="geo"):
            logging.getLogger("geo.ingest.run").info("no flow run here")
    assert "no flow run here" in caplog.text


def test_a_run_failed_on_bad_input_is_logged_without_its_traceback() -> None:
    """Prefect logs a failed run with its exception; for bad input found mid-way, or a service
    that does not answer, that is the error line alone (the CLI's last line says it again), for
    anything else the traceback. Prefect's "Engine execution exited" record of bad input, after
    the failure line in a deployment run, goes altogether."""
    import flows  # noqa: F401  (importing flows sets the filter up)
    from geo.errors import InputError

    seen: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(keep)
    try:
        for exc in (
            InputError("s.tif: corrupt or truncated raster"),
            ConnectionError("--stac URL: unavailable (no such host)"),
            KeyError("bug"),
        ):
            try:
                raise exc
            except Exception:
                with warnings.catch_warnings():  # no flow run here for Prefect's API handler
                    warnings.filterwarnings("ignore", message=".*without a flow run id")
                    logger.error("Encountered exception during execution: %r", exc, exc_info=True)
                    logger.error("Engine execution exited with unexpected exception", exc_info=True)
    finally:
        logger.removeHandler(keep)
    bad_input, unanswered, bug, bug_exit = seen[-4:]
    assert bug_exit.getMessage().startswith("Engine execution exited") and bug_exit.exc_info
    assert bad_input.exc_info is None and "corrupt or truncated raster" in bad_input.getMessage()
    assert unanswered.exc_info is None and "unavailable (no such host)" in unanswered.getMessage()
    assert bug.exc_info is not None and isinstance(bug.exc_info[1], KeyError)


def test_the_prediction_summary_lists_every_output_and_the_warnings(tmp_path: Path) -> None:
    """What the predict-summary artifact shows of each scene: its outputs (the quick-look,
    probability and manifest too, not only the class raster and polygons), how much of it was
    predicted, and the warnings about scenes unlike the training data."""
    outputs = {kind: str(tmp_path / f"a{suffix}") for kind, suffix in OUTPUTS.items()}
    Path(outputs["manifest"]).write_text(json.dumps({"predicted_percent": 87.5}))
    warning = "a.tif does not look like the training data: pixels are float32; see --tile-size"
    text = summary_markdown([outputs], [warning])
    assert "- **a_classes.tif** (87.5 % predicted)" in text
    for kind in ("classes", "polygons", "quicklook", "probability", "manifest"):
        assert f"  - {kind}: `{outputs[kind]}`" in text
    assert f"**Warning:** {warning}" in text  # parameter names in a deployment run
