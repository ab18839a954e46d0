"""The sweep helpers, kept under their old name for callers: they live in :mod:`edgediff.parallel`."""

from edgediff.parallel import SweepError, Task, connect_ray, default_workers, run_tasks

__all__ = ["SweepError", "Task", "connect_ray", "default_workers", "run_tasks"]
