"""What one stage hands the next, parsed and validated once: classes, tile stores, adapters,
and what a model's metrics say."""

import lazy_loader

# The names in __init__.pyi, each imported when first used: a command that needs no torch
# (`--help`, `tile`) does not pay for importing it.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
