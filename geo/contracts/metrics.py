"""What a model's metrics tell a reader beyond IoU: whether it tells the classes apart at all,
and, per class, the map accuracies of remote sensing with the confusion matrix they come from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from geo.options import flag

ONE_CLASS_SHARE = 0.98  # a model predicting one class for this share of pixels learnt nothing


def one_class_warning(
    metrics: dict[str, Any] | None, *, weighted: bool = False, pixels: str = "validation"
) -> str | None:
    """What to say when the metrics show the model predicting (nearly) one class for every
    pixel: it has not learnt to tell the classes apart. `weighted`: the run weighed classes
    already (no use suggesting it); `pixels`: which pixels the metrics are of."""
    shares = (metrics or {}).get("predicted_share") or {}
    if not shares:
        return None
    name, share = max(shares.items(), key=lambda item: item[1])
    if share < ONE_CLASS_SHARE:
        return None
    weights = "" if weighted else f"try {flag('class_weights')} auto, "
    return (
        f"the model predicts {name} for {100 * share:.1f}% of the {pixels} pixels: it does not "
        f"tell the classes apart yet (train longer, start from a SAM checkpoint, {weights}or "
        "check the labels)"
    )


def map_accuracies(matrix: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """From a confusion matrix of pixels (rows: reference, columns: predicted): each class's
    producer's accuracy (its reference pixels predicted as it: recall) and user's accuracy (its
    predicted pixels that are it: precision), None where a class has no such pixel, and the
    matrix itself with its class names."""
    counts = np.asarray(matrix, dtype=np.int64)
    right = np.diag(counts)

    def share(total: np.ndarray) -> dict[str, float | None]:
        return {
            name: None if n == 0 else round(float(r / n), 6)
            for name, r, n in zip(names, right, total, strict=True)
        }

    return {
        "producers_accuracy": share(counts.sum(axis=1)),
        "users_accuracy": share(counts.sum(axis=0)),
        "confusion_matrix": {
            "classes": list(names),
            "rows": "reference",
            "columns": "predicted",
            "pixels": counts.tolist(),
        },  # fmt: skip
    }
