"""`convlora-geo demo`: the whole job end to end on the bundled sample scene."""

from __future__ import annotations

import argparse

from flows.local_server import run_flow
from geo.errors import InputError
from geo.options import local_path

QGIS_HELP = """
Look first: {quicklook}
  (the predicted classes over the scene, with a legend; any image viewer opens it)

Open the results in QGIS (3.22 or newer):
  1. Layer > Add Layer > Add Raster Layer: {classes}
     (its style {qml} loads with it: class names and colours in the legend)
  2. Drag {polygons} onto the map: polygons are styled by class from the GeoPackage.
  3. Optional: {probability} shows how sure the model is (0-255).
The demo model trained for a few minutes on one scene from scratch: it shows the pipeline,
not a good field detector. Real use starts from an official SAM checkpoint (see README).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run tile, fine-tune and predict on bundled sample data")
    p.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    p.add_argument("--steps", type=steps, default=300, help="training steps (default: 300)")
    p.set_defaults(run=run)


def steps(text: str) -> int:
    """A number of training steps: an integer of at least 1 (else one argparse error line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from flows.finetune import class_ious

    try:
        local_path(args.out)
    except ValueError as exc:
        raise InputError(f"--out {args.out}: {exc}") from None
    result = run_flow("flows.demo", "demo_flow", out=args.out, steps=args.steps)
    outputs, validation = result["outputs"], result["validation"]
    print("\nDemo finished. Outputs:")
    for name in sorted(outputs, key=lambda name: name != "quicklook"):  # the quick-look first
        print(f"  {name:<12} {outputs[name]}")
    ious = class_ious(validation)
    print(f"\nValidation IoU of the best checkpoint: {ious} (mIoU {validation['miou']:.2f})")
    print(
        QGIS_HELP.format(
            quicklook=outputs["quicklook"],
            classes=outputs["classes"],
            qml=outputs["style"],
            polygons=outputs["polygons"],
            probability=outputs["probability"],
        )
    )
    return 0
