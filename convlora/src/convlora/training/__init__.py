"""Training internals: configuration, optimiser, data order, distributed setup, resumable state.

The public entry points are re-exported by `convlora.train`.
"""
