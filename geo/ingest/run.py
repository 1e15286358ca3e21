"""Ingest: predict what a model has not predicted yet from a source, and record what happened.

A run lists the source (files under a folder or bucket, or the items of a STAC catalog), keeps
what the ingest record (`geo.ingest.records`) does not hold as done or refused at its current
version, and checks each new scene against the model before any prediction: a file the model
cannot read (too few bands, no CRS when the model was trained on georeferenced scenes, not a
raster) is skipped with a warning and recorded with the reason, and checked again only when it
changes. A local file that cannot be read and changed in the last `SETTLING_S` seconds is
probably still being copied in: it is left for the next run, not refused. The scenes that pass
are predicted (`run_ingest`: here, one after the other; the flow fans them out over its task
runner) and `finish_ingest` records the outcome. A run fails, with one line, only when there
were new scenes (other than those left for the next run) and none of them could be predicted.

STAC items are stacked first: each becomes ITEM_ID.vrt over the band assets the band map names,
cut to the area of interest (`geo.ingest.stac.stack_item`); outputs are named by item id.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry

from geo.contracts.adapter import AdapterMetadata
from geo.errors import (
    InputError,
    NothingToPredictError,
    OutputBusyError,
    OutsideAreaError,
    PassingError,
    UnreadableError,
)
from geo.ingest.catalog import check_source, model_id, scene_files
from geo.ingest.config import IngestConfig
from geo.ingest.records import RECORD_FILE, IngestRecord, check_record
from geo.ingest.region import check_region, is_stale, write_region
from geo.ingest.stac import (
    BandMap,
    StacItem,
    asset_signer,
    find_items,
    parse_band_map,
    safe_name,
    stack_item,
)
from geo.ingest.stac.clouds import cloud_mask as find_cloud_mask
from geo.ingest.stac.signing import signer_name
from geo.io.sas import PLANETARY_COMPUTER
from geo.io.scheduler import check_scheduler
from geo.io.storage import StagedOutput, is_url, join
from geo.predict import PredictConfig, Scene, predict_planned, prepare_scene
from geo.predict.familiar import warn_if_unfamiliar
from geo.predict.plan import check_model, check_out
from geo.predict.scene import AreaOfInterest, output_names, window_grid

log = logging.getLogger(__name__)

STACKS = ".stac"  # hidden folder of the items' VRTs, under the output folder (or its staging)
SETTLING_S = 120  # an unreadable file changed this recently may still be being written
OUTPUT_OPTIONS = ("tile_size", "overlap", "min_area", "simplify", "aoi")  # shape the outputs


@dataclass(frozen=True)
class Candidate:
    """A scene of the source: its id in the record (a path, URL or item id) and version, and
    the stem of its outputs."""

    id: str
    version: str
    name: str
    item: StacItem | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.id, self.version


@dataclass
class IngestPlan:
    """A checked ingest run: the new scenes that the model can read, and what was refused."""

    source: str  # for reports
    config: PredictConfig
    record: IngestRecord
    record_path: str
    settings: str  # what else decides whether a scene is refused (the STAC band map)
    found: int
    new: int
    scenes: list[tuple[Candidate, Scene]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # id -> reason
    failed: dict[str, str] = field(default_factory=dict)
    arriving: dict[str, str] = field(default_factory=dict)  # left for the next run: id -> reason
    empty: dict[str, str] = field(default_factory=dict)  # nothing to predict (all cloud): id -> why
    region: str | None = None  # the region layer to rewrite (`geo.ingest.region`)
    outputs_made_with: dict[str, Any] = field(default_factory=dict)  # options recorded per scene
    kept: str | None = None  # scenes done before with other options, kept as they were: why


@dataclass
class IngestResult:
    """What one run did: how many scenes the source holds and are new, what was predicted
    (id -> outputs), refused, failed, left for the next run while still arriving, and found
    to hold nothing to predict (all cloud, or no data over the area) (id -> reason)."""

    source: str
    out: str
    found: int
    new: int
    predicted: dict[str, dict[str, str]]
    refused: dict[str, str]
    failed: dict[str, str]
    arriving: dict[str, str]
    region: str | None = None  # what was written to the region layer, in words
    empty: dict[str, str] = field(default_factory=dict)
    kept: str | None = None  # scenes predicted before with other options (kept): in words

    def check(self) -> None:
        """InputError with one line when there were new scenes, other than those still
        arriving or holding nothing to predict, and none could be predicted."""
        if self.new == len(self.arriving) + len(self.empty) or self.predicted:
            return
        problems = [_named(i, r) for i, r in {**self.refused, **self.failed}.items()]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InputError(
            f"none of the {self.new} new scene(s) could be predicted: {'; '.join(problems[:3])}"
            f"{more}; see {join(self.out, RECORD_FILE)}"
        )

    def counts(self) -> str:
        """What happened to the new scenes, in words."""
        text = (f"{len(self.predicted)} predicted, {len(self.refused)} skipped, "
                f"{len(self.failed)} failed (retried next run)")  # fmt: skip
        if self.empty:
            text += f", {len(self.empty)} with nothing to predict (all cloud or no data)"
        if self.arriving:
            text += f", {len(self.arriving)} still being written (taken next run)"
        return text

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def check_ingest(ingest: IngestConfig, predict: PredictConfig) -> AdapterMetadata:
    """Pre-flight check: the output folder or URL, the model, the source, the band map against
    the model's bands, and the ingest record there. InputError naming the input; writes nothing."""
    out = check_out(predict.out)
    check_scheduler(predict.dask_address)
    metadata = check_model(predict.model, predict.sam_checkpoint, predict.device)
    window_grid(metadata, predict.tile_size, predict.overlap)
    if ingest.source:
        check_source(ingest.source)
    else:
        band_map(ingest, metadata)
    check_record(join(out, RECORD_FILE))
    if ingest.region:
        check_region(ingest.region)
    return metadata


def band_map(ingest: IngestConfig, metadata: AdapterMetadata) -> BandMap:
    """The `--bands` map for the model's bands."""
    return parse_band_map(ingest.bands or "", metadata.bands)


def plan_ingest(
    ingest: IngestConfig, predict: PredictConfig, *, now: dt.datetime | None = None
) -> IngestPlan:
    """List the source, keep what is new for this model, and check each new scene against the
    model (STAC items stacked first): those it can read are planned, the others recorded as
    refused (or, after a transient error such as a network failure, as failed). `now` anchors
    relative STAC time windows. The record is saved before anything is predicted."""
    metadata = check_ingest(ingest, predict)
    record_path = join(predict.out, RECORD_FILE)
    masks: dict[str, str] = {}  # item id -> the asset its clouds are masked by
    record = IngestRecord.load(record_path, model_id(predict.model))
    if ingest.source:
        files = scene_files(ingest.source, ingest.pattern, predict.out)
        names = output_names(list(files))
        candidates = [Candidate(p, v, n) for (p, v), n in zip(files.items(), names, strict=True)]
        plan = IngestPlan(ingest.source, predict, record, record_path, "", len(files), 0)
        image_of: Callable[[Candidate], str] = _file
        signed, made_with = False, {}
    else:
        source, bands = ingest.stac_source(), band_map(ingest, metadata)
        items = find_items(source, now=now, modifier=asset_signer(ingest.sign, source.url))
        candidates = [Candidate(i.id, i.version, safe_name(i.id), i) for i in items]
        settings = f"bands={bands}" + (
            f"; cloud_mask={ingest.cloud_mask}" if ingest.cloud_mask is not None else ""
        )  # items skipped for these settings are checked again under others
        plan = IngestPlan(source.describe(), predict, record, record_path, settings, len(items), 0)
        folder = StagedOutput(predict.out).folder / STACKS
        image_of = _stacker(bands, source.area(), folder, ingest.cloud_mask, masks)
        signed = signer_name(ingest.sign, source.url) == PLANETARY_COMPUTER
        made_with = {"bands": str(bands), "cloud_mask": ingest.cloud_mask}
    new = record.due(candidates, settings=plan.settings)
    plan.new, plan.region = len(new), ingest.region
    log.info("%d scene(s) found, %d new for model %s", plan.found, plan.new, record.model)
    plan.outputs_made_with = {o: getattr(predict, o) for o in OUTPUT_OPTIONS} | made_with
    plan.kept = _kept_as_they_were(plan, candidates)
    aoi = None if predict.aoi is None else AreaOfInterest.read(predict.aoi)
    for candidate in new:
        try:
            scene = _checked_scene(image_of(candidate), candidate.name, metadata, predict, aoi)
        except NothingToPredictError as exc:
            _record_empty(plan, candidate, exc, masks.get(candidate.id))
        except (InputError, OSError) as exc:
            _record_failure(plan, candidate, exc)
        else:
            plan.scenes.append((candidate, replace(scene, sas_tokens=signed)))
    record.save(record_path)
    return plan


def _file(candidate: Candidate) -> str:
    return candidate.id


def _kept_as_they_were(plan: IngestPlan, candidates: list[Candidate]) -> str | None:
    """Scenes predicted before with other options are not predicted again (a run predicts new
    scenes only): a warning says how many and what differs, or None."""
    otherwise = plan.record.done_otherwise(candidates, plan.outputs_made_with, lambda c: c.key)
    if not otherwise:
        return None
    differences = list(dict.fromkeys(d for found in otherwise.values() for d in found))
    kept = (
        f"{len(otherwise)} scene(s) predicted before with other options ({'; '.join(differences)}) "
        f"are kept as they were: a run predicts new scenes only (to predict every scene again "
        f"with these options, move {plan.record_path} away)"
    )
    log.warning(kept)
    return kept


def _stacker(
    bands: BandMap,
    area: BaseGeometry | None,
    folder: Path,
    cloud_mask: str | None,
    masks: dict[str, str],
) -> Callable[[Candidate], str]:
    """Stacks an item's bands over the area into FOLDER/ITEM_ID.vrt, masked by its cloud mask
    asset (`geo.ingest.stac.clouds`; its key noted in `masks`), and returns its path."""

    def stack(candidate: Candidate) -> str:
        assert candidate.item is not None
        mask = find_cloud_mask(candidate.item, cloud_mask)
        if mask is not None:
            log.info("%s: clouds masked by its %r asset (%s)", candidate.id, mask.asset.key,
                     mask.kind.name)  # fmt: skip
            masks[candidate.id] = mask.asset.key
        return str(stack_item(candidate.item, bands, area, folder, cloud_mask=mask))

    return stack


def _named(item_id: str, reason: str) -> str:
    """The reason, starting with the scene it is about (once)."""
    return reason if reason.startswith(item_id) else f"{item_id}: {reason}"


def _record_empty(
    plan: IngestPlan, candidate: Candidate, exc: NothingToPredictError, mask: str | None
) -> None:
    """A scene with nothing to predict (all cloud, no data over the area, or outside --aoi) is
    recorded, checked again only when it changes, and does not fail the run."""
    reason = _named(candidate.id, str(exc))
    if mask is not None and not isinstance(exc, OutsideAreaError):
        reason = (f"{candidate.id}: no clear pixel over the area (clouds, cloud shadows or no "
                  f"data by its {mask!r} asset)")  # fmt: skip
    log.info("nothing to predict (checked again when it changes) %s", reason)
    plan.record.mark_skipped(candidate.id, candidate.version, reason, plan.settings)
    plan.empty[candidate.id] = reason


def _record_failure(plan: IngestPlan, candidate: Candidate, exc: BaseException) -> None:
    """Bad input is refused until the scene (or the settings) change; anything else (a full
    disk) fails this run and is retried on the next. An unreadable file that changed lately,
    or a scene another run is writing the outputs of now, is left for the next run,
    unrecorded (a run with only such scenes does not fail)."""
    named = _named(candidate.id, str(exc))
    age = _seconds_since_change(candidate) if isinstance(exc, UnreadableError) else None
    if isinstance(exc, UnreadableError) and age is not None and age < SETTLING_S:
        reason = exc.problem.removeprefix(f"{candidate.id}: ")
        log.info("left for the next run %s: changed %.0f s ago, so perhaps still being "
                 "written (%s)", candidate.id, age, reason)  # fmt: skip
        plan.arriving[candidate.id] = exc.problem  # no advice to re-download: it may be whole soon
    elif isinstance(exc, OutputBusyError):
        log.info("left for the next run %s: another run is writing its outputs now", candidate.id)
        plan.arriving[candidate.id] = str(exc)
    elif isinstance(exc, InputError) and not isinstance(exc, PassingError):
        log.warning("skipped (checked again when it changes) %s", named)
        plan.record.mark_skipped(candidate.id, candidate.version, str(exc), plan.settings)
        plan.refused[candidate.id] = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("failed (retried on the next run) %s (%s)", named, type(exc).__name__)
        plan.record.mark_failed(candidate.id, candidate.version, reason)
        plan.failed[candidate.id] = reason


def _seconds_since_change(candidate: Candidate) -> float | None:
    """How long ago a local file last changed (None for URLs and STAC items: an object appears
    whole once written)."""
    if candidate.item is not None or is_url(candidate.id):
        return None
    try:
        return max(0.0, time.time() - Path(candidate.id).stat().st_mtime)
    except OSError:
        return None


def _checked_scene(
    image: str,
    name: str,
    metadata: AdapterMetadata,
    config: PredictConfig,
    aoi: AreaOfInterest | None,
) -> Scene:
    scene = prepare_scene(
        image, metadata, tile_size=config.tile_size, overlap=config.overlap, name=name, aoi=aoi
    )
    if metadata.georeferenced and scene.info.crs is None:
        raise InputError(f"{image}: no CRS, and the model was trained on georeferenced scenes")
    warn_if_unfamiliar(scene.info, metadata, scene.bands)
    return scene


def finish_ingest(
    plan: IngestPlan, outcomes: Mapping[str, Mapping[str, str] | BaseException]
) -> IngestResult:
    """Record each planned scene's outcome (its outputs, or the exception that stopped it: bad
    input is refused until the scene changes, anything else is retried on the next run), save
    the record, and return the run's result (`IngestResult.check` says whether it failed)."""
    predicted: dict[str, dict[str, str]] = {}
    for candidate, _ in plan.scenes:
        outcome = outcomes[candidate.id]
        if isinstance(outcome, BaseException):
            _record_failure(plan, candidate, outcome)
        else:
            plan.record.mark_done(
                candidate.id, candidate.version, outcome, settings=plan.outputs_made_with
            )
            predicted[candidate.id] = dict(outcome)
    plan.record.save(plan.record_path)
    region = None
    if plan.region and (predicted or is_stale(plan.region, plan.record)):
        region = write_region(plan.region, plan.record, plan.config)
    return IngestResult(
        plan.source, plan.config.out, plan.found, plan.new, predicted, plan.refused,
        plan.failed, plan.arriving, region, plan.empty, plan.kept,
    )  # fmt: skip


def run_ingest(ingest: IngestConfig, predict: PredictConfig) -> IngestResult:
    """One ingest run in this process: plan, predict the new scenes one after the other, record.
    `predict.images` is ignored (give the source in `ingest`)."""
    plan = plan_ingest(ingest, predict)
    outcomes: dict[str, Mapping[str, str] | BaseException] = {}
    for candidate, scene in plan.scenes:
        try:
            outcomes[candidate.id] = predict_planned(scene, plan.config, progress=False)
        except Exception as exc:  # one scene's failure is recorded; the others go on
            if not isinstance(exc, InputError):
                log.exception("%s: prediction failed", candidate.id)
            outcomes[candidate.id] = exc
    result = finish_ingest(plan, outcomes)
    result.check()
    return result


def predict_options(ingest: IngestConfig, values: Mapping[str, object]) -> PredictConfig:
    """The prediction options of an ingest run (its `images` name the source)."""
    source = ingest.source or ingest.stac or ""
    return PredictConfig.pick({**values, "images": [source]})


__all__ = [
    "Candidate",
    "IngestPlan",
    "IngestResult",
    "check_ingest",
    "finish_ingest",
    "plan_ingest",
    "predict_options",
    "run_ingest",
]
