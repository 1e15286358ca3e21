"""Which scenes a folder or bucket holds: files matching a pattern, with version tags, except
what this tool wrote there (prediction outputs, hidden work folders, the output folder)."""

from __future__ import annotations

import posixpath
from pathlib import Path

from convlora.adapter_files import WEIGHTS_NAME
from convlora.files import sha256_file
from geo.errors import InputError
from geo.io.raster import is_virtual
from geo.io.storage import PATTERN, check_storage, is_url, list_files
from geo.predict.scene import OUTPUTS

# Prediction outputs that a scene pattern such as *.tif may match: written beside a manifest.
RASTER_OUTPUTS = tuple(suffix for kind, suffix in OUTPUTS.items() if suffix.endswith(".tif"))


def check_source(source: str) -> None:
    """InputError when a local source folder or scene does not exist, a URL cannot be read
    (the cloud extras missing, no credentials, nothing there), or a file pattern was given as
    the source (`ingest 'scenes/*.tif'`: the pattern goes in --pattern)."""
    folder, name = posixpath.split(source)
    if PATTERN.search(name) and not PATTERN.search(folder) and not Path(source).exists():
        raise InputError(f"{source}: give the folder and the file pattern apart: "
                         f"{folder} --pattern '{name}'")  # fmt: skip
    if is_url(source):
        check_storage(source, "input folder")
    elif not is_virtual(source) and not Path(source).exists():
        raise InputError(f"{source}: source not found (give a folder, a scene or a URL)")


def scene_files(source: str, pattern: str, out: str) -> dict[str, str]:
    """Scene path or URL -> version tag (the object's ETag, else size and modification time) of
    the files under `source` matching `pattern`, leaving out hidden paths (work folders such as
    `.NAME.partial/`), files under `out` when it is inside `source`, and the rasters a
    prediction wrote (NAME_classes.tif and NAME_probability.tif beside NAME_manifest.json), so
    that `ingest SRC --out SRC` predicts only the scenes, run after run."""
    files = list_files(source, pattern)
    root, out = source.rstrip("/"), out.rstrip("/")
    manifest = OUTPUTS["manifest"]
    manifests = set(list_files(source, posixpath.join(posixpath.dirname(pattern), "*" + manifest)))
    kept = {}
    for path, version in files.items():
        inside = path[len(root) + 1 :] if path.startswith(root + "/") else Path(path).name
        if any(part.startswith(".") for part in inside.split("/")):
            continue
        if out != root and path.startswith(out + "/"):
            continue
        stems = [path.removesuffix(s) for s in RASTER_OUTPUTS if path.endswith(s)]
        if any(stem + manifest in manifests for stem in stems):
            continue
        kept[path] = version
    return kept


def model_id(model: str) -> str:
    """A short identity of the adapter: the sha256 of its weights file."""
    weights = Path(model) / WEIGHTS_NAME if Path(model).is_dir() else Path(model)
    return sha256_file(weights)[:16]
