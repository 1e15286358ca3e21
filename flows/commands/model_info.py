"""`convlora-geo info --model RUN`: what a trained model is, read from its `adapter.json` and its
run's `config.json` (no weights are loaded)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from geo.contracts.adapter import AdapterMetadata, run_config
from geo.errors import InputError
from geo.options import flag


def describe_model(args: argparse.Namespace, configuration: dict[str, object]) -> int:
    """Print the model at `args.model` (JSON with `--json`); InputError for an unreadable one,
    or when options of a `configuration` (name: default) are given as well."""
    given = [flag(o) for o, default in configuration.items() if getattr(args, o) != default]
    if given:
        raise InputError(
            f"--model {args.model} describes a trained model, {', '.join(given)} a model "
            "configuration: give one or the other"
        )
    from convlora.info import parameter_report

    metadata = AdapterMetadata.read(args.model)
    summary = model_summary(metadata, args.model)
    summary["parameters"] = parameter_report(metadata.model)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join(_lines(summary)))
    return 0


def model_summary(metadata: AdapterMetadata, model: str) -> dict[str, Any]:
    """The model's description as JSON-ready data."""
    cfg = metadata.model
    positions = cfg.band_init if cfg.band_init is not None else range(min(3, len(metadata.bands)))
    run = run_config(model)
    checkpoint, started = run.get("sam_checkpoint"), run.get("init_from")
    val = metadata.training.get("val") or {}
    return {
        "model": str(metadata.path.parent),
        "sam_variant": cfg.sam_variant,
        "adapter": cfg.adapter,
        "rank": cfg.rank,
        "experts": cfg.experts,
        "gate": cfg.gate,
        "image_size": cfg.image_size,
        "tile_size": metadata.tile_size,
        "overlap": metadata.overlap,
        "sam_checkpoint_sha256": metadata.sam_checkpoint_sha256,
        "sam_checkpoint": checkpoint,
        "sam_checkpoint_found": bool(checkpoint) and Path(str(checkpoint)).is_file(),
        "classes": [c.to_dict() for c in metadata.classes],
        "bands": list(metadata.bands),
        "band_names": list(metadata.band_names),
        "rgb_bands": [metadata.bands[p] for p in positions],
        "dtype": metadata.dtype,
        "pixel_size_m": metadata.pixel_size_m,
        "best_step": metadata.training.get("step"),
        "best_epoch": metadata.training.get("epoch"),
        "validation": {k: val[k] for k in ("miou", "per_class_iou", "pixels") if k in val},
        "store_fingerprint": metadata.store_fingerprint,
        "init_from": started,
    }


def _lines(s: dict[str, Any]) -> list[str]:
    """The summary as text, then the parameter counts."""
    adapter = s["adapter"]
    if adapter in ("lora", "conv-lora"):
        adapter += f" (rank {s['rank']}" + (
            f", {s['experts']} experts, {s['gate']} gate)" if adapter == "conv-lora" else ")"
        )
    if s["sam_checkpoint_sha256"] is None:
        checkpoint = "none: the model carries its whole weights"
    else:
        where = s["sam_checkpoint"] or "a file its run does not name"
        state = "there" if s["sam_checkpoint_found"] else "not there: pass --sam-checkpoint"
        checkpoint = f"sha256 {s['sam_checkpoint_sha256'][:16]}..., trained on {where} ({state})"
    bands = zip(s["bands"], s["band_names"], strict=True)
    names = [f"{b} ({n})" if n else str(b) for b, n in bands]
    pixel = f", {s['pixel_size_m']:g} m pixels" if s["pixel_size_m"] else ""
    val = s["validation"]
    per_class = ", ".join(f"{k} {v:.2f}" for k, v in (val.get("per_class_iou") or {}).items()
                          if v is not None)  # fmt: skip
    lines = [
        f"model: {s['model']}",
        f"  SAM {s['sam_variant']}, adapter {adapter}, SAM sees {s['image_size']} px",
        f"  SAM checkpoint: {checkpoint}",
        f"  input: {len(s['bands'])} bands {', '.join(names)} ({s['dtype']}{pixel}); SAM's "
        f"R,G,B = bands {','.join(map(str, s['rgb_bands']))}",
        f"  windows: {s['tile_size']} px, overlap {s['overlap']} (the tiles it was trained on)",
        "  classes: " + ", ".join(f"{c['id']} {c['name']}" for c in s["classes"]),
    ]
    if s["init_from"]:
        lines.append(f"  trained further from: {s['init_from']}")
    if val:
        lines.append(
            f"  best checkpoint: step {s['best_step']}, validation mIoU {val['miou']:.4f}"
            + (f" ({per_class})" if per_class else "")
        )
    else:
        lines.append(f"  checkpoint of step {s['best_step']} (not validated)")
    report = s["parameters"]
    lines.append(f"parameters: {report['total_params']:,} in all, {report['trainable_params']:,} "
                 f"trained ({report['trainable_percent']:.2f} %)")  # fmt: skip
    return lines
