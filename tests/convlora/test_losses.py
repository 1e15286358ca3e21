"""Losses (Hungarian, semantic, binary) and the confusion-matrix metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlora.losses import build_criterion
from convlora.metrics import ConfusionMatrix
from convlora.model import SegmentationOutput


def _labels() -> torch.Tensor:
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :, 4:] = 2
    return labels


def _perfect_output(order: tuple[int, int, int], aux: float = 0.0) -> SegmentationOutput:
    """Query order[0] segments class 0, order[1] class 2, order[2] predicts "no object"."""
    labels = _labels()[0]
    masks = torch.full((1, 3, 8, 8), -12.0)
    classes = torch.full((1, 3, 4), -12.0)
    masks[0, order[0]][labels == 0] = 12.0
    masks[0, order[1]][labels == 2] = 12.0
    classes[0, order[0], 0] = classes[0, order[1], 2] = classes[0, order[2], 3] = 12.0
    return SegmentationOutput(masks, classes, torch.tensor(aux))


def test_hungarian_matching_is_order_free_and_rewards_right_answers() -> None:
    criterion = build_criterion("hungarian", num_classes=3)
    good = criterion(_perfect_output((0, 1, 2)), _labels())
    assert float(good["loss"]) < 0.01
    permuted = criterion(_perfect_output((2, 0, 1)), _labels())
    torch.testing.assert_close(permuted["loss"], good["loss"])
    wrong = _perfect_output((0, 1, 2))
    wrong.class_logits[0, [0, 1]] = wrong.class_logits[0, [1, 0]]
    assert float(criterion(wrong, _labels())["loss_ce"]) > 5


def test_hungarian_unmatched_queries_go_to_no_object_with_weight() -> None:
    criterion = build_criterion("hungarian", num_classes=3)
    out = _perfect_output((0, 1, 2))
    out.class_logits[0, 2] = 0.0  # the spare query is unsure: CE pushes it to "no object"
    parts = criterion(out, _labels())
    p_no_object = torch.tensor(0.25)
    expected = -torch.log(p_no_object) * 0.1 / (1 + 1 + 0.1)
    torch.testing.assert_close(parts["loss_ce"], expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name,num_classes", [("hungarian", 3), ("semantic", 3), ("semantic", 1)])
def test_ignored_pixels_do_not_count(name: str, num_classes: int) -> None:
    torch.manual_seed(0)
    labels = _labels() if num_classes > 1 else (_labels() > 0).long()
    labels[0, :2] = 255
    mask_logits = torch.randn(1, 3 if num_classes > 1 else 1, 8, 8, requires_grad=True)
    class_logits = torch.randn(1, 3, 4) if num_classes > 1 else None
    criterion = build_criterion(name, num_classes=num_classes)
    out = criterion(SegmentationOutput(mask_logits, class_logits, torch.tensor(0.5)), labels)
    out["loss"].backward()
    assert torch.count_nonzero(mask_logits.grad[0, :, :2]) == 0
    assert torch.count_nonzero(mask_logits.grad[0, :, 2:]) > 0
    parts = sum(v for k, v in out.items() if k not in ("loss", "aux_loss"))
    torch.testing.assert_close(out["loss"], parts + 0.5)


def test_semantic_loss_is_low_for_a_confident_right_answer() -> None:
    criterion = build_criterion("semantic", num_classes=3)
    right = _perfect_output((0, 2, 1))  # query c is class c; class 1 is absent: no object
    assert float(criterion(right, _labels())["loss"]) < 0.01
    assert float(criterion(right, _labels().flip(-1))["loss"]) > 5
    swapped = criterion(_perfect_output((0, 1, 2)), _labels())  # same map, other queries
    assert float(swapped["loss_ce"]) < 0.01 and float(swapped["loss_class"]) > 5


def test_semantic_loss_tells_identical_queries_apart() -> None:
    """Two queries alike (an untrained model): their masks cancel out of the normalised
    scores, so only the class loss, query c to class c, sets them on different courses."""
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:6, 2:6] = 1
    labels[1] = 255  # nothing labelled: no class target
    mask_logits = torch.zeros(2, 2, 8, 8, requires_grad=True)
    class_logits = torch.zeros(2, 2, 3, requires_grad=True)
    criterion = build_criterion("semantic", num_classes=2)
    out = criterion(SegmentationOutput(mask_logits, class_logits, torch.tensor(0.0)), labels)
    out["loss"].backward()
    grad = class_logits.grad
    assert torch.count_nonzero(grad[1]) == 0
    assert grad[0, 0, 0] < 0 < grad[0, 0, 1]  # query 0 towards background
    assert grad[0, 1, 1] < 0 < grad[0, 1, 0]  # query 1 towards the foreground class
    assert float(mask_logits.grad[0].abs().max()) < 1e-6  # the masks cancel out: no signal


def test_criterion_rejects_unknown_names_and_bad_weights() -> None:
    with pytest.raises(ValueError, match="not in"):
        build_criterion("focal", 3)
    with pytest.raises(ValueError, match="class_weights has 2 values"):
        build_criterion("semantic", 3, class_weights=[1.0, 2.0])


def test_confusion_matrix_metrics() -> None:
    matrix = ConfusionMatrix(3)
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    matrix.update(pred, target)
    result = matrix.compute()
    assert result["per_class_iou"] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert result["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert result["per_class_f1"] == pytest.approx([0.5, 0.8, 2 / 3])
    assert result["pixel_accuracy"] == pytest.approx(4 / 6)
    absent = ConfusionMatrix(4)
    absent.update(pred, target)
    assert absent.compute()["per_class_iou"][3] is None
    assert absent.compute()["miou"] == pytest.approx(result["miou"])
    with pytest.raises(ValueError, match="class ids"):
        matrix.update(np.array([3]), np.array([0]))
