"""Prediction: scenes and a trained adapter into class and probability COGs, polygons, styles.

`PredictConfig` holds the options; `check_prediction` checks them once into a plan;
`predict_scene` predicts one planned scene (resumable); `predict` runs a whole config here.
"""

import lazy_loader

# The names in __init__.pyi, each imported when first used: a command that needs no torch
# (`--help`, `tile`) does not pay for importing it.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
