"""`convlora-geo ingest`: predict the scenes of a folder, bucket or STAC catalog that this model
has not predicted yet."""

from __future__ import annotations

import argparse

from flows.commands import add_command
from flows.local_server import run_flow
from flows.parameters import INGEST


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "ingest", INGEST, help="predict new scenes of a folder, bucket or STAC catalog",
        description="Predict the scenes under SOURCE (or the items of a --stac catalog) that "
        "this model has not predicted yet. Files it cannot read are skipped with a warning and "
        "recorded; an ingest record in the output folder makes reruns predict nothing twice.",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from geo.ingest import IngestConfig, IngestResult, check_ingest, predict_options

    values = INGEST.values(args)
    ingest = INGEST.build(IngestConfig, values)
    check_ingest(ingest, predict_options(ingest, values))  # before Prefect starts
    result = run_flow("flows.ingest", "ingest_flow", **values)
    done = IngestResult(**result)
    print(f"{done.new} new of {done.found} scene(s) into {done.out}: {done.counts()}")
    if done.region:
        print(f"region layer: {done.region}")
    return 0
