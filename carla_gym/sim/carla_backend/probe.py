"""Check that a CARLA server answers at host:port before the `carla` client talks to it in this process.

The `carla` client aborts the whole process (SIGABRT from an uncaught C++ exception, no Python
exception) when the service at the port is not a CARLA server. So the host is resolved and a TCP
connection tried here, and the client's first handshake (`get_server_version`) runs in a child
Python process: whatever kills the child becomes a `ConnectionError` naming host:port.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

# The child's handshake; exit 3 when the client raised (a time-out: nothing answered like a server).
_HANDSHAKE = """
import sys
import carla
client = carla.Client(sys.argv[1], int(sys.argv[2]))
client.set_timeout(float(sys.argv[3]))
try:
    print(client.get_server_version())
except RuntimeError as err:
    print(err, file=sys.stderr)
    sys.exit(3)
"""

# Seconds the child may take beyond the handshake's own time-out (starting Python, importing carla).
_START_SECONDS = 30.0


def _start_hint(port: int) -> str:
    return (
        f"Start one with `./CarlaUE4.sh -RenderOffScreen -carla-rpc-port={port}` "
        "or pass host=/port= of a running server."
    )


def probe_server(host: str, port: int, timeout: float) -> str:
    """The server's version if a CARLA server answers at host:port; otherwise a ConnectionError naming host:port."""
    where = f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise ConnectionError(f"cannot resolve the CARLA host of {where}: {err}") from None
    family, kind, proto, _, address = addresses[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
    except OSError as err:
        raise ConnectionError(
            f"no CARLA server answered at {where} within {timeout:g} s ({err}). {_start_hint(port)}"
        ) from None
    try:
        done = subprocess.run(
            [sys.executable, "-c", _HANDSHAKE, host, str(port), repr(timeout)],
            capture_output=True,
            text=True,
            timeout=timeout + _START_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise ConnectionError(
            f"the service at {where} accepted a connection but gave no CARLA handshake "
            f"within {timeout + _START_SECONDS:g} s; is it a CARLA 0.9.16 server?"
        ) from None
    if done.returncode == 0:
        return done.stdout.strip()
    detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
    if done.returncode == 3:
        raise ConnectionError(
            f"no CARLA server answered at {where} within {timeout:g} s ({detail}). {_start_hint(port)}"
        )
    if done.returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-done.returncode).name}"
        except ValueError:
            how = f"was killed by signal {-done.returncode}"
    else:
        how = f"exited with status {done.returncode}"
    raise ConnectionError(
        f"the service at {where} is not a CARLA 0.9.16 server: the client's handshake with it {how} "
        f"({detail}). Check host= and port= (the CARLA RPC port, 2000 by default)."
    )
