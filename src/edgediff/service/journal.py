"""The edge's write-ahead journal: one JSON line per request state change (docs/service.md).

An accepted request is written ahead, before its 202 (``status`` ``queued``, with ``steps``
and the wall-clock ``time``); its terminal state follows (``done``, ``denied`` or ``failed``
with ``reason``, ``window`` and ``split``). Durability: every line is flushed to the OS at
once, so it survives the process being killed (SIGKILL, OOM); with ``fsync`` the
acceptance lines are also forced to the disk before the 202, so they survive a power loss
too (terminal lines are not: after a power loss a finished request may be reported lost).

On restart with the same file, :func:`replay` returns the requests accepted but never
finished (the engine answers them ``failed``, reason ``lost in restart``) and the newest
finished ones (their status stays available by id). Every line is validated on replay
(:class:`Accepted`, :class:`Finished`): a line that is not a record (undecodable, torn, a
wrong type or status, a terminal record without its acceptance) is skipped, and one warning
counts them, so a restored request always fits the ``JobStatus`` schema.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgediff.errors import InputError
from edgediff.service.schemas import MAX_STEPS, TERMINAL

log = logging.getLogger(__name__)

LOST = "lost in restart"


class JournalError(InputError):
    """The journal file cannot be used; the message names it and says why, in one line."""


Count = Annotated[int, Field(ge=0)]


class Accepted(BaseModel):
    """An acceptance line (:meth:`Journal.accepted`)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    id: Annotated[str, Field(min_length=1)]
    status: Literal["queued"]
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)]
    time: Annotated[float, Field(allow_inf_nan=False)] | None = None
    tenant: str | None = None
    calls: Annotated[int, Field(ge=1)] | None = None  # N in denoiser calls, the unit of split (None: steps)


class Finished(BaseModel):
    """A terminal line (:meth:`Journal.finished`)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    id: Annotated[str, Field(min_length=1)]
    status: Literal[TERMINAL]  # type: ignore[valid-type]
    reason: str | None = None
    window: Count | None = None
    split: Count | None = None


@dataclass(frozen=True)
class Replay:
    """What a journal holds: acceptance records never finished, newest terminal records last.

    Each record is a dict of the fields of :class:`Accepted` (``lost``) or of
    :class:`Finished` plus its acceptance's ``steps`` and ``tenant`` (``finished``)."""

    lost: list[dict]
    finished: list[dict]
    lines: int
    skipped: int  # lines that are not records (e.g. the torn last line of a killed process)


def replay(path: str | Path, keep: int, *, warn: bool = True) -> Replay:
    """Read the journal at ``path`` (missing: empty). ``keep`` bounds the terminal records
    returned (the newest); every unfinished request is returned. Lines that are not valid
    records are skipped and counted, in one warning (``warn``). Raises
    :class:`JournalError` if the file cannot be read or its first line is not a record."""
    path = Path(path)
    pending: OrderedDict[str, dict] = OrderedDict()
    finished: OrderedDict[str, dict] = OrderedDict()
    lines = skipped = 0
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return Replay([], [], 0, 0)
    except OSError as err:
        raise JournalError(f"cannot read journal {str(path)!r}: {err.strerror or err}") from None
    with handle:
        try:
            for raw in handle:
                lines += 1
                shaped, record = _record(raw)
                if lines == 1 and not shaped:
                    raise JournalError(f"{str(path)!r} is not an edgediff journal (line 1 is not a record)")
                if isinstance(record, Accepted):
                    pending[record.id] = record.model_dump()
                    continue
                accepted = None if record is None else pending.get(record.id)
                if record is None or accepted is None or (record.split or 0) > (accepted["calls"] or accepted["steps"]):
                    skipped += 1  # not a record, a terminal one never accepted or one splitting past its steps
                    continue
                del pending[record.id]
                finished.pop(record.id, None)
                finished[record.id] = {
                    **record.model_dump(),
                    "steps": accepted["steps"],
                    "calls": accepted["calls"],
                    "tenant": accepted["tenant"],
                }
                if len(finished) > keep:
                    finished.popitem(last=False)
        except OSError as err:
            raise JournalError(f"cannot read journal {str(path)!r}: {err.strerror or err}") from None
    if skipped and warn:
        log.warning("journal %s: skipped %d line(s) of %d that are not records", path, skipped, lines)
    return Replay(list(pending.values()), list(finished.values()), lines, skipped)


def _record(raw: bytes) -> tuple[bool, Accepted | Finished | None]:
    """Whether ``raw`` has a record's shape (an object with a string ``id`` and a ``status``:
    the first line must), and the record, or ``None`` if it is not a valid one."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False, None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or "status" not in data:
        return False, None
    try:
        return True, (Accepted if data["status"] == "queued" else Finished).model_validate(data)
    except ValidationError:
        return True, None


class Journal:
    """Appends records to ``path`` (created if missing); thread-safe. ``fsync``: acceptance
    records reach the disk before :meth:`accepted` returns (see the module docstring)."""

    def __init__(self, path: str | Path, fsync: bool = True):
        self.path, self.fsync = Path(path), fsync
        self._lock = threading.Lock()
        try:
            created = not self.path.exists()
            self._file = self.path.open("ab", buffering=0)
        except OSError as err:
            raise JournalError(f"cannot open journal {str(self.path)!r}: {err.strerror or err}") from None
        if self._file.tell() > 0 and not _ends_with_newline(self.path):
            self._file.write(b"\n")  # a torn last line (killed mid-write) stays on its own line
        if created and fsync:  # the new file's directory entry, too
            _fsync_directory(self.path.parent)

    def accepted(self, job_id: str, steps: int, tenant: str | None = None, calls: int | None = None) -> None:
        """Write ahead: ``job_id`` was accepted (``steps`` asked, ``calls`` its schedule's
        denoiser calls, the unit of its split). Call :meth:`sync` before the client hears so."""
        record = {"id": job_id, "status": "queued", "steps": steps, "time": time.time()}
        if calls is not None and calls != steps:
            record["calls"] = calls
        if tenant is not None:
            record["tenant"] = tenant
        self._write(record)

    def sync(self) -> None:
        """With ``fsync``: force what was written to the disk."""
        if self.fsync:
            with self._lock:
                if not self._file.closed:
                    os.fsync(self._file.fileno())

    def finished(self, job_id: str, status: str, reason: str | None, window: int | None, split: int | None) -> None:
        self._write({"id": job_id, "status": status, "reason": reason, "window": window, "split": split})

    def _write(self, record: dict) -> None:
        line = (json.dumps(record) + "\n").encode()
        with self._lock:
            if self._file.closed:
                log.warning("journal %s is closed; not written: %s", self.path, record)
                return
            self._file.write(line)  # unbuffered: one write(2) per record, in the OS at once

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                if self.fsync:
                    os.fsync(self._file.fileno())
                self._file.close()


def check_journal(path: str | Path) -> None:
    """Raise :class:`JournalError` unless ``path`` can be read as a journal and appended to
    (``edgediff serve`` checks this before loading the model)."""
    path = Path(path)
    if path.is_dir():
        raise JournalError(f"journal {str(path)!r} is a directory")
    if not path.parent.is_dir():
        raise JournalError(f"journal directory {str(path.parent)!r} does not exist")
    replay(path, keep=0, warn=False)  # the engine's replay warns of skipped lines, once
    if path.exists() and not os.access(path, os.W_OK) or not path.exists() and not os.access(path.parent, os.W_OK):
        raise JournalError(f"cannot write journal {str(path)!r}: permission denied")


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
