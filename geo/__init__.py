"""convlora-geo's geospatial library: the pipeline's stages as plain functions.

    tiling ─► finetune ─► evaluate
                  │
    predict ◄─────┘ ─► vectorize

Each stage has one frozen, validated config (`TileConfig`, `FinetuneConfig`, `EvaluateConfig`,
`PredictConfig`) from which the CLI and the Prefect flows derive their options; `contracts`
types what one stage hands the next; `io` holds the primitives that know no stage.
"""

import lazy_loader

# The names in __init__.pyi, each imported when first used: a command that needs no torch
# (`--help`, `tile`) does not pay for importing it.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
