"""`convlora-geo ingest`: predict scenes in a folder or bucket that this model has not seen yet."""

from __future__ import annotations

import argparse

from flows.commands import add_command
from flows.parameters import INGEST


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "ingest", INGEST, help="predict new scenes found under a folder or URL",
        description="Predict the scenes under SOURCE that this model has not predicted yet; "
        "a manifest in the output folder makes reruns predict nothing twice.",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from geo.ingest import IngestConfig
    from geo.ingest.catalog import check_source
    from geo.io.outputs import check_output
    from geo.predict import PredictConfig
    from geo.predict.plan import check_model

    values = INGEST.values(args)
    ingest = INGEST.build(IngestConfig, values)
    config = INGEST.build(PredictConfig, {**values, "images": [ingest.source]})
    check_model(config.model, config.sam_checkpoint, config.device)  # before Prefect starts
    check_output(config.out, into=True)
    check_source(ingest.source)
    from flows.ingest import ingest_flow

    done = ingest_flow(**values)
    print(f"predicted {len(done)} new scene(s) into {values['out']}")
    return 0
