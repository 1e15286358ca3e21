"""`convlora-geo evaluate`: per-class IoU, mIoU, F1 and pixel accuracy of a model on a store."""

from __future__ import annotations

import argparse
import json
from typing import Any

from flows.commands import add_command
from flows.parameters import EVALUATE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "evaluate", EVALUATE, help="measure a trained model on a labelled tile store",
        description="Per-class IoU, mIoU, F1 and pixel accuracy (label 255 ignored) of a "
        "trained adapter on any labelled tile store, e.g. one tiled from a held-out area, and "
        "object precision, recall and F1 (a predicted object counts when it matches a "
        "reference object at IoU > 0.5) with the median IoU of the matches.",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true", help="print the metrics as JSON (default: as text)"
    )
    p.set_defaults(run=run)


def table(metrics: dict[str, Any]) -> str:
    """The metrics as a plain-text table."""
    lines = [
        f"{metrics['store']} ({metrics['split']}, {metrics['tiles']} tiles, "
        f"{metrics['pixels']:,} labelled pixels)",
        *class_rows(metrics),
        f"pixel accuracy: {_number(metrics['pixel_accuracy']).strip()} (the confusion matrix: "
        "--json)",
        object_line(metrics["objects"]),
        *(f"warning: {warning}" for warning in metrics.get("warnings", [])),
    ]
    return "\n".join(lines)


def class_rows(metrics: dict[str, Any]) -> list[str]:
    """IoU, F1, producer's and user's accuracy (where measured) and share of the predicted
    pixels per class, then the means, as table rows."""
    share = metrics.get("predicted_share", {})
    producers, users = metrics.get("producers_accuracy") or {}, metrics.get("users_accuracy") or {}
    accuracies = f"{'producer':>10}{'user':>8}" if producers and users else ""
    lines = [f"{'class':<24}{'IoU':>8}{'F1':>8}{accuracies}{'predicted':>11}"]
    for name, iou in metrics["per_class_iou"].items():
        f1 = _number(metrics["per_class_f1"][name])
        accuracy = f"{_number(producers[name]):>10}{_number(users[name]):>8}" if accuracies else ""
        predicted = f"{share[name]:10.1%}" if name in share else ""
        lines.append(f"{name:<24}{_number(iou):>8}{f1:>8}{accuracy} {predicted}".rstrip())
    lines.append(f"{'mean':<24}{_number(metrics['miou']):>8}{_number(metrics['f1']):>8}")
    return lines


def _number(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.4f}"


def object_line(objects: dict[str, Any]) -> str:
    """Object precision, recall, F1 and median IoU in one line."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    return (
        f"objects (IoU > {objects['iou_threshold']}): precision {fmt(objects['precision'])}, "
        f"recall {fmt(objects['recall'])}, F1 {fmt(objects['f1'])}, median IoU "
        f"{fmt(objects['median_iou'])} ({objects['matched']} matched of {objects['predicted']} "
        f"predicted, {objects['reference']} reference)"
    )


def run(args: argparse.Namespace) -> int:
    from geo.contracts.tile_store import StoreInfo
    from geo.evaluate.config import EvaluateConfig

    config = EVALUATE.build(EvaluateConfig, EVALUATE.values(args))
    StoreInfo.read(args.store)  # a wrong store fails here, before torch is imported
    from geo.evaluate import evaluate_on_store

    metrics = evaluate_on_store(config)
    print(json.dumps(metrics, indent=2) if args.json else table(metrics))
    return 0
