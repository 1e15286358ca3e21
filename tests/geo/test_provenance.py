"""A model's weights digest (in every prediction manifest) is computed once per model and again
only when its weights change."""

from __future__ import annotations

import copy

import pytest
import torch

from geo.io import provenance
from geo.io.provenance import model_digest, weights_digest


def test_a_models_digest_is_reused_until_its_weights_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    hashed: list[int] = []
    monkeypatch.setattr(
        provenance, "weights_digest", lambda state: hashed.append(1) or weights_digest(state)
    )
    first = model_digest(model)
    assert first == weights_digest(model.state_dict()) and model_digest(model) == first
    assert len(hashed) == 1  # the second call reused it
    with torch.no_grad():
        model[0].weight.add_(1.0)  # written in place, as an optimiser step does
    changed = model_digest(model)
    assert changed not in (None, first) and changed == weights_digest(model.state_dict())
    model[2].weight = torch.nn.Parameter(torch.zeros(2, 3))  # another tensor
    assert model_digest(model) == weights_digest(model.state_dict()) != changed
    assert len(hashed) == 3
    assert model_digest(copy.deepcopy(model)) == model_digest(model)  # same weights, same digest


def test_models_made_in_inference_mode_are_hashed_every_time() -> None:
    """Inference-mode tensors keep no version counter, so nothing is reused for them."""
    with torch.inference_mode():
        model = torch.nn.Linear(2, 2)
    assert model_digest(model) == weights_digest(model.state_dict())
    assert model_digest(object()) is None
