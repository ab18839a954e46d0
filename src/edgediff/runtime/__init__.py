"""Part C runtime: real diffusion models split between an edge server and a device.

The only edgediff package that imports torch, diffusers and transformers. Entry points:
:func:`~edgediff.runtime.models.load_model` (``"tiny"`` or a pipeline directory),
:func:`~edgediff.runtime.split.run_edge` / :func:`~edgediff.runtime.split.run_local` /
:func:`~edgediff.runtime.split.generate`, the :class:`~edgediff.runtime.executor.BatchedExecutor`,
the latent payload (:mod:`edgediff.runtime.payload`) and calibration
(:mod:`edgediff.runtime.calibrate`). See docs/runtime.md.
"""
