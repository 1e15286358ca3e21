"""Flow run names that say what a run works on (`nebraska.tif -> field-boundaries`) instead of
Prefect's random ones (`smart-otter`), so that runs are told apart in the UI's list."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

from prefect.runtime import flow_run

from geo.finetune.config import FROM_SCRATCH_SAM, FinetuneConfig, chosen_adapter

Parameters = Mapping[str, Any]


def named(describe: Callable[[Parameters], str]) -> Callable[[], str]:
    """A `flow_run_name` callable: `describe` of the run's parameters."""

    def name() -> str:
        return describe(flow_run.parameters)

    return name


def last_part(path: object) -> str:
    """A path's or URL's last part: `/data/runs/fields/` -> `fields`."""
    text = str(path).rstrip("/")
    return PurePosixPath(text).name or text


def scenes(images: str | list[str] | None) -> str:
    """The first scene (or pattern) and how many more: `a.tif +2`."""
    given = [images] if isinstance(images, str) else list(images or [])
    if not given:
        return "no scenes"
    more = f" +{len(given) - 1}" if len(given) > 1 else ""
    return last_part(given[0]) + more


def images_run(p: Parameters) -> str:
    """A run of `tile` or `predict`: its scenes and where they go."""
    return f"{scenes(p.get('images'))} -> {last_part(p.get('out'))}"


def finetune_run(p: Parameters) -> str:
    """A `finetune` run: its scenes, run folder and model (`--sam auto` named by the
    checkpoint's file, or as the variant it resolves to without one; with `init_from`, the
    starting model's)."""
    p = FinetuneConfig.resolve_start(dict(p))
    checkpoint, sam = p.get("sam_checkpoint"), p.get("sam") or "auto"
    if sam == "auto":
        sam = last_part(checkpoint) if checkpoint else FROM_SCRATCH_SAM
    adapter = chosen_adapter(p.get("adapter") or "auto", checkpoint)
    return f"{images_run(p)} ({sam} {adapter})"


def scenes_run(p: Parameters) -> str:
    """The subflow that fans planned scenes out (of `predict` and `ingest`)."""
    names = [str(getattr(scene, "name", scene)) for scene in p.get("scenes") or []]
    return f"{scenes(names)} -> {last_part(getattr(p.get('config'), 'out', ''))}"


def ingest_run(p: Parameters) -> str:
    source = p.get("collection") if p.get("stac") else last_part(p.get("source"))
    return f"{source} -> {last_part(p.get('out'))}"
