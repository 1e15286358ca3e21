"""convlora: Conv-LoRA and LoRA adapters for Segment Anything, end-to-end multi-class SAM.

Reusable on its own (any imagery); imports only torch, segment_anything, safetensors, numpy
and lazy_loader.
"""

import lazy_loader

# The names in __init__.pyi, each imported when first used: `import convlora` (or a config
# class) does not import torch and SAM until a name that needs them is used.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
