"""Your own code by name, for both parts' plugin policies (docs/your-policy.md):
``module:attr`` (an importable module) or ``path/to/file.py:attr`` (a Python file)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from edgediff.errors import InputError


class PluginNotFound(InputError):
    """A plugin's module or file cannot be found or imported; the message says which."""


def import_target(target: str) -> tuple[Any, str]:
    """The module of ``module:attr`` or ``path/to/file.py:attr`` (imported now) and the
    attribute's name; :class:`PluginNotFound` naming what is missing."""
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise PluginNotFound(f"policy {target!r}: expected module:function or file.py:function")
    if where.endswith(".py"):
        path = Path(where).resolve()
        if not path.is_file():
            raise PluginNotFound(f"policy {target!r}: no file {where}")
        # a stable module name per file, so that a worker process imports the same module
        module_name = "edgediff_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        if module_name not in sys.modules:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception:
                del sys.modules[module_name]
                raise
        return sys.modules[module_name], attr
    try:
        return importlib.import_module(where), attr
    except ModuleNotFoundError as err:
        raise PluginNotFound(f"policy {target!r}: cannot import {where!r} ({err})") from None
