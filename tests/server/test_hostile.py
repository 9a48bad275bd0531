"""Hostile clients against a real uvicorn with the server's connection settings, over raw loopback sockets:
oversized bodies on closing connections, silent and slow connections, connection floods."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time

import pytest

from tests.server.test_live import free_socket

READ_TIMEOUT_S = 30.0  # a bound on a test that would otherwise hang; not a measured figure


@pytest.fixture
def hostile_server(base_settings, translators):
    """``start(**setting_overrides)`` -> (host, port) of uvicorn serving the app as ``vqnat serve`` would."""
    import uvicorn
    from vqnat_server.app import create_app
    from vqnat_server.connection import uvicorn_options

    started = []

    def start(**overrides) -> tuple[str, int]:
        settings = dataclasses.replace(base_settings, **overrides)
        options = uvicorn_options(settings)
        del options["host"], options["port"]
        sock = free_socket()
        server = uvicorn.Server(uvicorn.Config(create_app(settings, translators), **{**options,
                                                                                    "log_level": "warning"}))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        started.append((server, thread, sock))
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return sock.getsockname()

    yield start
    for server, thread, sock in started:
        server.should_exit = True
        thread.join(timeout=READ_TIMEOUT_S)
        sock.close()


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=READ_TIMEOUT_S)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-response"
        body += chunk
    return status, headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed the connection (before READ_TIMEOUT_S), reading whatever it sent first."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ------------------------------------------------------------------------------------------------ oversized
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversized_body_on_a_closing_connection_gets_its_413(hostile_server, framing):
    address = hostile_server()
    size = 4 * 1024 * 1024  # far over max_body_bytes (8 KiB): the socket buffers hold only part of it
    body = b'{"text": ["' + b"a" * size + b'"]}'
    headers = {"Content-Type": "application/json", "Connection": "close"}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        step = 64 * 1024
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step])
                           for i in range(0, len(body), step)) + b"0\r\n\r\n"
    else:
        headers["Content-Length"] = str(len(body))
        payload = body
    sock = connect(address)
    # as simple clients do: the whole request first, then the answer. A server that closes with the body unread
    # resets the connection, and the client gets ConnectionResetError or BrokenPipeError instead of the 413.
    sock.sendall(request_head("POST", "/v1/translate", headers) + payload)
    status, _, answer = read_response(sock)
    sock.close()
    assert status == 413 and json.loads(answer)["error"] == "body_too_large"


# ------------------------------------------------------------------------------------------------ slow, silent
def test_a_silent_connection_is_closed(hostile_server):
    sock = connect(hostile_server(header_timeout_s=0.3))
    assert closed_by_server(sock)
    sock.close()


def test_headers_sent_a_byte_at_a_time_are_cut_off(hostile_server):
    sock = connect(hostile_server(header_timeout_s=0.5))
    head = request_head("GET", "/health", {"X-Padding": "p" * 200})
    closed = False
    for byte in head[:-4]:  # never completes the headers
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        time.sleep(0.02)
        if _peek_closed(sock):
            closed = True
            break
    assert closed or closed_by_server(sock)
    sock.close()


def _peek_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)
        sock.settimeout(READ_TIMEOUT_S)


def test_a_kept_alive_connection_must_send_its_next_headers_in_time_too(hostile_server):
    sock = connect(hostile_server(header_timeout_s=0.5, keep_alive_timeout_s=60))
    sock.sendall(request_head("GET", "/health", {}))
    status, _, _ = read_response(sock)
    assert status == 200
    sock.sendall(b"GET /health HTTP/1.1\r\n")  # a byte disarms uvicorn's keep-alive timer, not the header timer
    assert closed_by_server(sock)
    sock.close()


def test_a_body_that_does_not_arrive_gets_408(hostile_server):
    sock = connect(hostile_server(body_timeout_s=0.5))
    sock.sendall(request_head("POST", "/v1/translate", {"Content-Type": "application/json",
                                                        "Content-Length": "100"}) + b'{"text": ')
    status, headers, body = read_response(sock)
    assert status == 408 and json.loads(body)["error"] == "body_timeout"
    assert headers.get("connection") == "close"
    sock.close()


def test_a_request_served_between_slow_ones_is_answered(hostile_server):
    address = hostile_server(header_timeout_s=5)
    idle = [connect(address) for _ in range(20)]  # silent connections, not yet timed out
    sock = connect(address)
    sock.sendall(request_head("POST", "/v1/translate", {"Content-Type": "application/json",
                                                        "Content-Length": "17"}) + b'{"text": ["Hi."]}')
    status, _, body = read_response(sock)
    assert status == 200 and len(json.loads(body)["translations"]) == 1
    for other in [*idle, sock]:
        other.close()


def test_connections_over_the_limit_get_503_and_the_service_recovers(hostile_server):
    address = hostile_server(max_connections=4, header_timeout_s=30)
    idle = [connect(address) for _ in range(4)]  # accepted before the next one, in order
    sock = connect(address)
    sock.sendall(request_head("GET", "/health", {}))
    status, _, _ = read_response(sock)
    assert status == 503
    for other in [*idle, sock]:
        other.close()
    deadline = time.monotonic() + READ_TIMEOUT_S
    while True:
        sock = connect(address)
        sock.sendall(request_head("GET", "/health", {}))
        status, _, _ = read_response(sock)
        sock.close()
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200
