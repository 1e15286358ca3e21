"""Fine-tuning in several processes: `torchrun` started from here, its output relayed to logging.

`train_in_processes(config)` runs `python -m torch.distributed.run --standalone
--nproc-per-node N -m geo.finetune.launch CONFIG SUMMARY`: N processes train one model with DDP
(NCCL on CUDA, one GPU each; gloo on the CPU), rank 0 writes the run folder. Each process logs
one line per record, `LEVEL LOGGER [rank R]: message`; this process re-logs under the same logger
and level rank 0's records, and the other ranks' errors and failure reports (they would repeat
rank 0's warnings). Rank 0's progress lines thus appear as `convlora.training` records, so a
Prefect flow run shows them; a failed run raises with the first error line any rank reported.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import traceback
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from convlora.devices import resolve_device
from convlora.errors import ConvLoRAInputError
from convlora.files import atomic_write_json
from geo.errors import InputError
from geo.finetune.config import FinetuneConfig
from geo.options import flag

MODULE = "geo.finetune.launch"  # this module, also when it runs as __main__ under torchrun
log = logging.getLogger(MODULE)

LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+) \[rank (\d+)\]: (.*)$")
FAILED = "failed: "  # how a process reports the error that stopped it
INPUT_ERRORS = (InputError, ConvLoRAInputError)


def under_torchrun() -> bool:
    """Whether this process is one of several started by torchrun (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def check_processes(config: FinetuneConfig) -> None:
    """InputError unless `config.nproc` training processes can run here: one CUDA device each,
    or CPU processes; a single process always can."""
    if config.nproc == 1:
        return
    try:
        device = resolve_device(config.device)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    option = f"{flag('nproc')} {config.nproc}"
    if device.type == "cuda" and config.nproc > torch.cuda.device_count():
        raise InputError(
            f"{option}: one process per GPU, and this machine has {torch.cuda.device_count()}"
        )
    if device.type not in ("cuda", "cpu"):
        raise InputError(f"{option}: several processes train on CUDA or the CPU, not {device}")


def train_in_processes(config: FinetuneConfig) -> dict[str, Any]:
    """Train `config` in `config.nproc` processes under torchrun; returns rank 0's summary.

    The processes' log lines are relayed to this process's logging as they come. Raises
    InputError (bad input found by a process) or RuntimeError naming the first rank's error.
    """
    check_processes(config)
    with tempfile.TemporaryDirectory(prefix="convlora-geo-train-") as tmp:
        spec, summary = Path(tmp) / "config.json", Path(tmp) / "summary.json"
        spec.write_text(config.model_dump_json(), encoding="utf-8")
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={config.nproc}", "-m", MODULE, str(spec), str(summary),
        ]  # fmt: skip
        log.info("training in %d processes (torchrun) into %s", config.nproc, config.out)
        status, error, tail = _run(command)
        if status == 0:
            return dict(json.loads(summary.read_text(encoding="utf-8")))
    if error is not None:
        rank, kind, message = error
        if kind in {t.__name__ for t in INPUT_ERRORS}:
            raise InputError(message)
        raise RuntimeError(f"training process {rank} failed: {kind}: {message}")
    last = " | ".join(tail) or "no output"
    raise RuntimeError(f"torchrun exited with status {status}: {last}")


def _run(command: Sequence[str]) -> tuple[int, tuple[str, str, str] | None, list[str]]:
    """Run torchrun, relaying its lines; (exit status, first error (rank, type, message), the
    last lines that were not log records)."""
    error: tuple[str, str, str] | None = None
    tail: deque[str] = deque(maxlen=5)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            match = LINE.match(line)
            if match is None:
                if line.strip():
                    log.debug("%s", line)
                    tail.append(line.strip())
                continue
            level, name, rank, message = match.groups()
            if rank == "0" or name == MODULE or getattr(logging, level) >= logging.ERROR:
                text = message if rank == "0" else f"[rank {rank}] {message}"
                logging.getLogger(name).log(getattr(logging, level), "%s", text)
            if error is None and name == MODULE and message.startswith(FAILED):
                kind, _, text = message.removeprefix(FAILED).partition(": ")
                error = (rank, kind, text)
        return proc.wait(), error, list(tail)
    finally:
        if proc.poll() is None:  # interrupted here: stop the processes too
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _check_quietly(config: FinetuneConfig) -> None:
    """The pre-flight check, its records below errors dropped: the launcher ran the same check
    and said what it chose and found (R,G,B bands, image size, rare classes) once; the check is
    memoised, so `train_on_store` does not say it again either."""
    from geo.finetune.train import check_finetune

    logging.disable(logging.WARNING)
    try:
        check_finetune(config)
    finally:
        logging.disable(logging.NOTSET)


def main(argv: Sequence[str]) -> int:
    """One training process under torchrun: `python -m geo.finetune.launch CONFIG SUMMARY`."""
    from geo.finetune.train import train_on_store

    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(levelname)s %(name)s [rank {rank}]: %(message)s",
    )  # fmt: skip
    for noisy in ("rasterio", "fsspec", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config_path, summary_path = argv
    try:
        config = FinetuneConfig.model_validate_json(Path(config_path).read_text(encoding="utf-8"))
        _check_quietly(config)
        summary = train_on_store(config)
    except Exception as exc:
        if not isinstance(exc, INPUT_ERRORS):  # a bug: its traceback, one record per line
            for line in "".join(traceback.format_exception(exc)).splitlines():
                log.info("%s", line)
        log.error("%s%s: %s", FAILED, type(exc).__name__, " ".join(str(exc).split()))
        return 2 if isinstance(exc, INPUT_ERRORS) else 1
    if rank == "0":
        atomic_write_json(summary_path, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
