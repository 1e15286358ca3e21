"""`pip install ./convlora` into a fresh virtual environment: the model core installs, loads a SAM
checkpoint, trains, saves and reloads an adapter, and brings in none of the geospatial stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CONVLORA = Path(__file__).resolve().parents[2] / "convlora"
NOT_INSTALLED = ("rasterio", "prefect", "geopandas", "zarr", "dask")

SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys
    from pathlib import Path
    import torch
    import convlora
    from convlora import ModelConfig, build_model, build_sam_variant, load_adapter
    from convlora.train import TrainConfig, fit

    assert Path(convlora.__file__).resolve().is_relative_to(Path(sys.prefix).resolve())
    work = Path(sys.argv[1])
    torch.manual_seed(0)
    torch.save(build_sam_variant("tiny", 32).state_dict(), work / "sam_tiny.pth")
    cfg = ModelConfig(sam_variant="tiny", image_size=32, adapter="conv-lora", num_classes=3)
    model = build_model(cfg, work / "sam_tiny.pth")
    assert model.config.mask_token_init == "copy"
    items = [{"image": torch.randn(3, 32, 32), "label": torch.randint(0, 3, (32, 32))}
             for _ in range(2)]
    summary = fit(cfg, TrainConfig(steps=1, accumulate=1, device="cpu"), items, items,
                  work / "run", sam_checkpoint=work / "sam_tiny.pth", progress=False)
    assert summary["steps"] == 1
    loaded, metadata = load_adapter(work / "run", sam_checkpoint=work / "sam_tiny.pth")
    proba = loaded.predict_proba(torch.randn(1, 3, 32, 32))
    assert proba.shape == (1, 3, 32, 32)
    absent = []
    for name in sys.argv[2:]:
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(name)
    print(json.dumps({"absent": absent, "torch": torch.__version__}))
    """
)


@pytest.mark.slow
def test_fresh_venv_install_trains_and_round_trips_an_adapter(tmp_path: Path) -> None:
    """Installs torch from this machine's package index (pip's configuration): 1-3 minutes."""
    source = tmp_path / "convlora"  # a copy, so that the build leaves nothing in the repository
    shutil.copytree(CONVLORA, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-compile"]
    done = subprocess.run([*install, str(source)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    installed = time.perf_counter() - started
    script = tmp_path / "standalone.py"
    script.write_text(SCRIPT)
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [str(python), str(script), str(work), *NOT_INSTALLED],
        capture_output=True, text=True, env=env, cwd=work, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = __import__("json").loads(run.stdout.strip().splitlines()[-1])
    assert result["absent"] == list(NOT_INSTALLED)
    print(f"install {installed:.0f} s, script {time.perf_counter() - started - installed:.0f} s")
