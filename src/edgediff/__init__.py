"""edgediff: edge-device collaborative diffusion serving.

Importing the package stays light (NumPy only); solvers, the CLI and any heavy
dependency (SciPy, torch, diffusers, FastAPI) are imported where they are used.
"""

__version__ = "0.1.0"
