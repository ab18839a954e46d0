"""Part C runtime: real diffusion models split between an edge server and a device.

Entry points: :func:`~edgediff.runtime.models.load_model` (``"tiny"`` or a pipeline directory),
:func:`~edgediff.runtime.split.run_edge` / :func:`~edgediff.runtime.split.run_local` /
:func:`~edgediff.runtime.split.generate`, the :class:`~edgediff.runtime.executor.BatchedExecutor`,
the latent payload (:mod:`edgediff.runtime.payload`) and calibration
(:mod:`edgediff.runtime.calibrate`). What depends on the model family (denoiser, text
conditioning, VAE) is a :class:`~edgediff.runtime.backends.DenoiserBackend`. torch, diffusers
and transformers are imported inside functions only, so that importing the package (and
``edgediff.cli``) stays light. See docs/runtime.md.
"""
