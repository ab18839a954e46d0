"""The shared system model of Part A (SPEC A.1, A.2): pure, vectorized NumPy functions."""
