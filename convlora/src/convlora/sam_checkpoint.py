"""Load official SAM `.pth` checkpoints strictly, at any image size, and fingerprint them."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

from convlora.errors import ConvLoRAInputError
from convlora.files import sha256_file
from convlora.registry import SAM_VARIANTS, build_sam_variant
from convlora.sam_modeling import Sam

POS_EMBED_KEY = "image_encoder.pos_embed"
UNSAFE_GLOBAL = "Unsupported global"  # how weights-only torch.load refuses Python objects


class SamCheckpointError(ConvLoRAInputError):
    """A SAM checkpoint does not fit the requested variant."""


def read_state_dict(path: str | Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read a SAM checkpoint with `torch.load(weights_only=True)` onto the CPU.

    `mmap` maps the tensors instead of reading them (for shape checks; zip-format files only,
    others are read). A file that holds Python objects besides tensors is refused, unread.
    """
    path = Path(path)
    if not path.is_file():
        raise SamCheckpointError(f"{path}: SAM checkpoint not found")
    try:
        state = _load(path, mmap)
    except Exception as exc:  # torch raises several types for corrupt or truncated files
        if isinstance(exc, pickle.UnpicklingError) and UNSAFE_GLOBAL in str(exc):
            message = (
                f"{path}: refused, it holds Python objects besides tensors and loading it could "
                "run code (official SAM .pth files hold only tensors)"
            )
        else:
            message = f"{path}: not a readable weights-only SAM checkpoint ({_reason(exc)})"
        raise SamCheckpointError(message) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SamCheckpointError(f"{path}: expected a state dict of tensors (an official SAM .pth)")
    return state


def _load(path: Path, mmap: bool) -> object:
    """torch.load, weights only; mmap when asked and the file is a zip archive."""
    mmap = mmap and zipfile.is_zipfile(path)
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _reason(exc: Exception) -> str:
    """The first sentence of an error, on one line."""
    if isinstance(exc, pickle.UnpicklingError | KeyError | EOFError):
        return "not a file written by torch.save"
    text = " ".join(str(exc).split()).split(". ")[0].rstrip(".")
    return f"{type(exc).__name__}: {text}" if len(text) < 20 else text


def check_sam_checkpoint(path: str | Path, variant: str, image_size: int | None = None) -> None:
    """Check, cheaply, that a SAM checkpoint fits `variant` at `image_size`: its tensors are
    mapped, not read, and compared with a model built on the meta device (no memory)."""
    state = read_state_dict(path, mmap=True)
    with torch.device("meta"):
        sam = build_sam_variant(variant, image_size)
    fit_state_dict(state, {k: v.shape for k, v in sam.state_dict().items()}, variant, str(path))


def checkpoint_variant(path: str | Path) -> str | None:
    """The registry variant a SAM checkpoint holds (its tensors mapped, not read), if any."""
    return guess_variant(read_state_dict(path, mmap=True))


def guess_variant(state: dict[str, torch.Tensor]) -> str | None:
    """Name the registry variant whose encoder width and depth match `state`, if any."""
    weight = state.get("image_encoder.patch_embed.proj.weight")
    if weight is None:
        return None
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    for name, variant in SAM_VARIANTS.items():
        if variant.embed_dim == weight.shape[0] and variant.depth == depth:
            return name
    return None


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Bicubic (antialiased) resize of a (1, g, g, D) positional embedding to grid x grid."""
    resized = F.interpolate(
        pos_embed.permute(0, 3, 1, 2).float(),
        size=(grid, grid),
        mode="bicubic",
        align_corners=False,
        antialias=True,
    )
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype)


def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resize of an (L, head_dim) relative-position table, as SAM's `get_rel_pos` does."""
    resized = F.interpolate(
        rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1).float(),
        size=length,
        mode="linear",
    )
    return resized.reshape(-1, length).permute(1, 0).to(rel_pos.dtype)


def fit_state_dict(
    state: dict[str, torch.Tensor],
    expected: dict[str, torch.Size],
    variant: str,
    source: str,
) -> dict[str, torch.Tensor]:
    """Check `state` key by key against `expected` shapes; interpolate position tables.

    Raises SamCheckpointError naming the missing, unexpected or mis-shaped keys and, when it can
    tell, which variant the checkpoint belongs to.
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    fitted: dict[str, torch.Tensor] = {}
    wrong: list[str] = []
    for key in sorted(set(expected) & set(state)):
        tensor, shape = state[key], expected[key]
        if tensor.shape == shape:
            fitted[key] = tensor
        elif key == POS_EMBED_KEY and tensor.dim() == 4 and tensor.shape[3] == shape[3]:
            fitted[key] = resize_pos_embed(tensor, shape[1])
        elif key.endswith((".rel_pos_h", ".rel_pos_w")) and tensor.shape[1:] == shape[1:]:
            fitted[key] = resize_rel_pos(tensor, shape[0])
        else:
            wrong.append(f"{key} {tuple(tensor.shape)} != {tuple(shape)}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {'; '.join(wrong[:2])})")
    if problems:
        guessed = guess_variant(state)
        hint = f"; it looks like a {guessed} checkpoint" if guessed and guessed != variant else ""
        raise SamCheckpointError(
            f"{source}: does not fit SAM {variant}: {', '.join(problems)}{hint}"
        )
    return fitted


def load_sam_checkpoint(sam: Sam, path: str | Path, variant: str) -> str:
    """Load an official SAM checkpoint into `sam` (strict, any image size); return its sha256."""
    state = read_state_dict(path)
    expected = {k: v.shape for k, v in sam.state_dict().items()}
    fitted = fit_state_dict(state, expected, variant, str(path))
    sam.load_state_dict(fitted, strict=True)
    return sha256_file(path)
