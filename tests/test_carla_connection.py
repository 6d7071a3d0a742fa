"""Connecting to CARLA: options checked up front, and every failure a ConnectionError naming host:port.

The real `carla` client aborts the process on a port where another service answers; those tests run
the backend in a child process, so a regression shows as a failed test instead of a dead test run.
"""

from __future__ import annotations

import math
import socket
import socketserver
import subprocess
import sys
import threading

import pytest
from fake_carla import FakeServer, make_fake_carla

from carla_gym.sim import make_backend
from carla_gym.sim.carla_backend import CarlaBackend, CarlaConfig
from carla_gym.sim.carla_backend.probe import probe_server


@pytest.mark.parametrize(
    "option, value",
    [
        ("host", ""),
        ("host", None),
        ("port", 0),
        ("port", 65534),
        ("port", 99999),
        ("port", "2000"),
        ("port", True),
        ("tm_port", 70000),
        ("timeout", -1),
        ("timeout", 0),
        ("timeout", math.nan),
        ("timeout", math.inf),
        ("timeout", "5"),
    ],
)
def test_bad_connection_options_are_named(option, value):
    with pytest.raises(ValueError, match=rf"CarlaConfig\.{option} .*{value!r}"):
        CarlaConfig(**{option: value})


def test_default_traffic_manager_port_must_fit():
    with pytest.raises(ValueError, match="port 60000: the default traffic manager port"):
        make_backend("carla", port=60000)
    assert CarlaConfig(port=60000, tm_port=8000).port == 60000


def test_the_probe_runs_before_the_client_and_its_error_propagates():
    server = FakeServer()
    fake = make_fake_carla({server.address: server})
    made = []
    fake.Client = lambda *a, _make=fake.Client: made.append(a) or _make(*a)
    calls = []

    def refuse(host, port, timeout):
        calls.append((host, port, timeout))
        raise ConnectionError(f"nothing at {host}:{port}")

    with pytest.raises(ConnectionError, match="nothing at localhost:2000"):
        CarlaBackend(CarlaConfig(timeout=0.5, size=(4, 8), vehicles=0, walkers=0), carla_module=fake, probe=refuse)
    assert calls == [("localhost", 2000, 0.5)] and not made  # the client never went there
    CarlaBackend(CarlaConfig(size=(4, 8), vehicles=0, walkers=0), carla_module=fake).close()  # fakes get no probe
    assert made


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Garbage(socketserver.BaseRequestHandler):
    """A service that is not CARLA: answers every connection with an HTTP response."""

    def handle(self) -> None:
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 8)
        self.request.settimeout(2.0)
        try:
            while self.request.recv(4096):
                pass
        except OSError:
            pass


@pytest.fixture
def garbage_port():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Garbage)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


_CONNECT = """
import sys
from carla_gym.sim.carla_backend import CarlaBackend, CarlaConfig
try:
    CarlaBackend(CarlaConfig(host=sys.argv[1], port=int(sys.argv[2]), tm_port=8000, timeout=2.0))
except ConnectionError as err:
    print("ConnectionError:", err)
"""


def test_a_service_that_is_not_carla_is_a_connection_error_not_an_abort(garbage_port):
    pytest.importorskip("carla")
    done = subprocess.run(
        [sys.executable, "-c", _CONNECT, "127.0.0.1", str(garbage_port)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"the connecting process died (status {done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.startswith(
        f"ConnectionError: the service at 127.0.0.1:{garbage_port} is not a CARLA 0.9.16 server"
    )


@pytest.mark.parametrize(
    "host, message",
    [
        ("nonexistent.invalid", "cannot resolve the CARLA host of nonexistent.invalid:{port}"),
        ("127.0.0.1", "no CARLA server answered at 127.0.0.1:{port}"),
    ],
)
def test_real_client_failures_name_host_and_port(host, message):
    pytest.importorskip("carla")
    port = _free_port()
    with pytest.raises(ConnectionError, match=message.format(port=port)):
        CarlaBackend(
            CarlaConfig(host=host, port=port, tm_port=8000, timeout=0.5)
        )  # an ephemeral port + 6000 may pass 65535


def test_probe_turns_a_silent_service_into_a_connection_error():
    pytest.importorskip("carla")
    with socket.socket() as listener:  # accepts connections (the kernel's backlog) but never speaks
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        with pytest.raises(ConnectionError, match=f"no CARLA server answered at 127.0.0.1:{port} within 0.5 s"):
            probe_server("127.0.0.1", port, 0.5)
