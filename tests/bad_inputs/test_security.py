"""No code from data files, no shell strings, no credentials in prefect.yaml, checked paths."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from geo.errors import InputError
from geo.ingest.catalog import check_source
from geo.io.outputs import check_output, make_folder
from geo.predict import PredictConfig
from geo.tiling import TileConfig
from tests.support.paths import AGNET_IMAGE, PIVOT_CLASSES, PIVOT_LABELS, ROOT, SCENE

PACKAGES = ("convlora", "geo", "flows")
SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|credential|private_?key|access_?key",
                        re.IGNORECASE)  # fmt: skip


def calls() -> list[tuple[str, ast.Call]]:
    """Every call in the packages, with 'file:line' for messages."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            where = str(path.relative_to(ROOT))
            found += [(f"{where}:{n.lineno}", n) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    return found


def name(call: ast.Call) -> str:
    """`torch.load`, `os.system`, `eval`: the dotted name a call is made through."""
    return ast.unparse(call.func)


def keyword(call: ast.Call, key: str) -> object:
    for kw in call.keywords:
        if kw.arg == key:
            return kw.value.value if isinstance(kw.value, ast.Constant) else ast.unparse(kw.value)
    return None


def test_checkpoints_load_weights_only_and_nothing_unpickles() -> None:
    found = calls()
    loads = [(w, c) for w, c in found if name(c) == "torch.load"]
    assert loads, "expected torch.load for SAM checkpoints"
    assert [w for w, c in loads if keyword(c, "weights_only") is not True] == []
    unpickling = {"pickle.load", "pickle.loads", "torch.serialization.add_safe_globals"}
    assert [w for w, c in found if name(c) in unpickling] == []
    assert [w for w, c in found if name(c).endswith("np.load") and keyword(c, "allow_pickle")] == []


def test_no_shell_strings_or_code_from_text() -> None:
    found = calls()
    shells = {"os.system", "os.popen", "eval", "exec", "subprocess.getoutput"}
    assert [w for w, c in found if name(c) in shells] == []
    assert [w for w, c in found if keyword(c, "shell") not in (None, False)] == []


def test_prefect_yaml_holds_no_credentials() -> None:
    text = (ROOT / "prefect.yaml").read_text()
    keys: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            keys.extend(str(k) for k in node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(text))
    assert [k for k in keys if SECRET_KEY.search(k)] == []
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text)  # no user:password@ in URLs


def test_options_are_resolved_and_checked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    relative = SCENE.relative_to(ROOT)
    config = TileConfig(
        images=[str(relative)], labels=[str(PIVOT_LABELS)], class_map=str(PIVOT_CLASSES),
        out="stores/x.zarr", tile_size=128, overlap=32,
    )  # fmt: skip
    assert config.images == [str(SCENE)] and config.out == str(ROOT / "stores" / "x.zarr")
    with pytest.raises(InputError, match="unknown option 'shell'"):
        PredictConfig.parse(
            {"images": [str(AGNET_IMAGE)], "model": str(tmp_path), "out": ".", "shell": "rm -rf /"}
        )
    with pytest.raises(InputError, match="not a folder"):
        check_output(AGNET_IMAGE, into=True)
    if Path("/proc/self").is_dir():  # where permissions allow what the system refuses
        with pytest.raises(InputError, match="^/proc/nope/out: cannot be created"):
            make_folder(Path("/proc/nope/out"))
    with pytest.raises(InputError, match="absent_folder: source not found"):
        check_source("absent_folder")
