"""Fine-tuning: SAM with an adapter on a tile store (`FinetuneConfig` -> `train_on_store`)."""

import lazy_loader

# The names in __init__.pyi, each imported when first used: a command that needs no torch
# (`--help`, `tile`) does not pay for importing it.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
