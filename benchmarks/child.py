"""One prediction with its peak memory, run in a fresh interpreter for the memory benchmarks.

    python -m benchmarks.child {ours|naive} IMAGE OUT STATS_SCENE VARIANT IMAGE_SIZE OVERLAP

It prints the wall seconds, the RSS when the prediction starts (interpreter, torch, model) and
the peak RSS while predicting: the high-water mark is reset at the start, so the transient peak
of importing torch (about 0.5 GB, freed at once) does not hide the prediction's own. The
process's lifetime peak is read by the parent (`tests.support.memory.peak_rss_of`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import PeakRSS
from tests.support.memory import peak_rss_of

CODE = "from benchmarks.child import main; main()"


def predict_once(
    mode: str, image: str, out: str, stats_scene: str, variant: str, size: str, overlap: str
) -> dict[str, Any]:
    """Build the untrained model, predict `image` with `predict_scene` ("ours") or the naive
    loop ("naive"), and measure it."""
    from benchmarks.bench_predict import BATCH, naive_predict
    from benchmarks.data import metadata_for, untrained_model
    from geo.predict import predict_scene, prepare_scene

    model = untrained_model(variant, int(size))
    metadata = metadata_for(model, Path(stats_scene), [1, 2, 3])
    start = time.perf_counter()
    with PeakRSS() as peak:
        if mode == "naive":
            naive_predict(Path(image), model, metadata, Path(out), int(size), int(overlap))
        else:
            scene = prepare_scene(image, metadata, overlap=int(overlap))
            predict_scene(scene, model, out, batch_size=BATCH, progress=False)
    return {
        "seconds": time.perf_counter() - start,
        "rss_at_start_mib": peak.start_mib,
        "peak_rss_mib": peak.start_mib + peak.peak_mib,
    }


def measure(args: list[str], fresh: bool) -> dict[str, Any]:
    """`predict_once(*args)` in a fresh interpreter (with its lifetime peak RSS), or in this
    one (quick mode: a fresh interpreter costs ~10 s of imports on a busy 2-core machine)."""
    if fresh:
        measured = peak_rss_of(CODE, args)
        return {**measured["result"], "process_lifetime_peak_mib": measured["peak_rss_mib"]}
    return {**predict_once(*args), "process_lifetime_peak_mib": None}


def main() -> None:
    print(json.dumps(predict_once(*sys.argv[1:8])))


if __name__ == "__main__":
    main()
