"""Evaluation: a trained adapter measured on a labelled tile store (`EvaluateConfig`)."""

import lazy_loader

# The names in __init__.pyi, each imported when first used: a command that needs no torch
# (`--help`, `tile`) does not pay for importing it.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
