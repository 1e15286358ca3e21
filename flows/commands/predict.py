"""`convlora-geo predict`: class COG, probability COG, polygons and QGIS styles for each scene."""

from __future__ import annotations

import argparse

from flows.commands import add_command
from flows.local_server import run_flow
from flows.parameters import PREDICT


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "predict", PREDICT, help="predict scenes into COGs and GeoPackage polygons"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from geo.predict import PredictConfig, check_prediction

    config = PREDICT.build(PredictConfig, PREDICT.values(args))
    check_prediction(config)  # bad input stops here, before Prefect starts
    for outputs in run_flow("flows.predict", "predict_flow", **config.params()):
        print("\n".join(f"{name}: {path}" for name, path in outputs.items()))
    return 0
