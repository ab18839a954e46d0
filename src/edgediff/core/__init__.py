"""The shared system model of Part A (docs/offloading-model.md): pure, vectorized NumPy functions."""
