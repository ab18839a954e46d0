"""Part A: per-window request handling (grant/deny) and split points (docs/offloading-model.md).

Every policy takes an :class:`~edgediff.core.instance.Instance` and returns a
:class:`~edgediff.core.model.Decision`; see :mod:`edgediff.offload.policies`.
"""
