"""Slow clients hold no connection longer than the read deadlines; the connection cap."""

import http.client
import socket
import time

import httpx
import pytest

from edgediff.service.server import ListenError, bind

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def _closed_after(sock, send=(), every=0.0, limit=10.0) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset), sending ``send`` bytes one at
    a time every ``every`` s meanwhile (a slow client)."""
    start, pending = time.monotonic(), list(send)
    sock.settimeout(every or 0.1)
    while time.monotonic() - start < limit:
        if pending:
            try:
                sock.sendall(bytes([pending.pop(0)]))
            except OSError:
                return time.monotonic() - start
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    return float("inf")


@pytest.mark.slow
def test_slow_clients_are_closed_after_the_read_deadlines(start_service):
    service, _ = start_service(cache_gb=0, header_timeout_s=0.6, body_timeout_s=0.6, keep_alive_s=5)
    address = ("127.0.0.1", service.port)
    with socket.create_connection(address) as silent:
        assert 0.5 < _closed_after(silent) < 3
    with socket.create_connection(address) as slowloris:  # a header byte every 0.2 s: never done
        assert 0.5 < _closed_after(slowloris, b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100, every=0.2) < 3
    with socket.create_connection(address) as slow_body:
        slow_body.sendall(b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{")
        assert 0.5 < _closed_after(slow_body, b'"prompt": "' + b"a" * 100, every=0.2) < 3
    keep_alive = http.client.HTTPConnection(*address, timeout=5)  # idle between requests: keep-alive rules
    for pause in (0.0, 1.5):  # longer than the header deadline
        time.sleep(pause)
        keep_alive.request("GET", "/healthz")  # raises RemoteDisconnected if the server closed it
        assert keep_alive.getresponse().read() == b'{"status":"ok","queued":0}'
    keep_alive.close()
    assert httpx.get(f"{service.url}/healthz").status_code == 200


@pytest.mark.slow
def test_connection_cap(start_service):
    service, _ = start_service(cache_gb=0, max_connections=3, header_timeout_s=30)
    address = ("127.0.0.1", service.port)
    held = [socket.create_connection(address) for _ in range(3)]
    try:
        time.sleep(0.2)
        with socket.create_connection(address) as extra:
            extra.settimeout(5)
            try:
                answer = extra.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert answer == b"" or answer.startswith(b"HTTP/1.1 503")
    finally:
        held.pop().close()
    time.sleep(0.2)
    with socket.create_connection(address) as ok:  # a slot is free again
        ok.sendall(REQUEST)
        assert b"200 OK" in ok.recv(4096)
    for sock in held:
        sock.close()


def test_a_taken_port_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            bind("127.0.0.1", port)
