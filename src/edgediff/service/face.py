"""The face of the service's routes: the seven calls :func:`edgediff.service.app.add_routes`
answers every route with, as a typed protocol. Three classes implement it: ``EngineFace``
(one engine in this process), ``EngineProcess`` (the engine in a child process) and
``FrontDoor`` (sites on a Ray cluster); the type checker holds each of them to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from fastapi.responses import JSONResponse, Response

from edgediff.service.schemas import SubmitRequest


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as plain data: what the routes below send, and what a site behind a
    front door (:mod:`edgediff.service.cluster`) returns to it, so both answer alike."""

    status_code: int
    content: dict | bytes  # bytes: a latent payload
    headers: dict = field(default_factory=dict)

    def response(self) -> Response:
        if isinstance(self.content, bytes):
            return Response(self.content, media_type="application/octet-stream", headers=self.headers)
        return JSONResponse(self.content, status_code=self.status_code, headers=self.headers or None)


class Face(Protocol):
    """What the routes call; every call is a coroutine."""

    async def submit(self, body: SubmitRequest, tenant: str | None) -> Answer:
        """202 with the new request's status (or the 4xx/503 answer)."""
        ...

    async def status(self, job_id: str, tenant: str | None, wait: float, until: str) -> Answer:
        """A request's status after waiting up to ``wait`` s for ``until`` (decided, finished)."""
        ...

    async def latent(self, job_id: str, tenant: str | None, wait: float) -> Answer:
        """A request's latent payload once done (else its status)."""
        ...

    async def measured(self, job_id: str, tenant: str | None, latency_s: float) -> Answer:
        """Record the device's total latency of a request the edge finished (its status)."""
        ...

    async def info(self, tenant: str | None) -> dict:
        """``/v1/info`` as ``tenant`` sees it (None: keys off; the operator: everything)."""
        ...

    async def status_data(self, tenant: str | None) -> dict:
        """The status page's data as ``tenant`` sees it."""
        ...

    async def health(self) -> Answer:
        """``/healthz``."""
        ...

    async def metrics(self) -> bytes:
        """``/metrics`` in Prometheus's text format."""
        ...


# the calls, in the protocol's order: what a face forwards as it is (the engine process's socket)
FACE_CALLS = tuple(name for name, value in vars(Face).items() if callable(value) and not name.startswith("_"))

if TYPE_CHECKING:  # each face is held to the protocol by the type checker
    from edgediff.service.app import EngineFace
    from edgediff.service.cluster import FrontDoor
    from edgediff.service.engine_process import EngineProcess

    def _faces(one: EngineFace, process: EngineProcess, front: FrontDoor) -> tuple[Face, Face, Face]:
        return one, process, front
