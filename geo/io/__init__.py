"""Primitives that know no stage: rasters, vectors, grids, COGs, styles, hashing, outputs."""
