"""One listening socket per ``galclip serve --workers`` process, on one port (``SO_REUSEPORT``).

uvicorn's supervisor binds one socket and every worker accepts from it. Under load the kernel
then hands most connections to whichever worker is awake: in the 32-connection reliability
campaign (benchmarks/RESULTS.md) one of two workers ran at 100 % of a core and the other sat
idle after warm-up. With
``SO_REUSEPORT`` each worker listens on its own socket of one port group and the kernel spreads
new connections over the group by their address hash (what nginx's ``reuseport`` and
gunicorn's ``--reuse-port`` do).

:class:`WorkerListener` is that socket as uvicorn's supervisor passes it on: in the supervisor
it is bound but not listening (it holds the port, so a port in use is a clean error before
any worker starts, and it never receives a connection); pickled to a worker process (uvicorn
spawns them) it becomes a new socket of that worker, bound to the same address, that starts
listening when the worker's server starts serving. A replacement for a dead worker gets its own
the same way. Linux allows a port group only among sockets of one user.
"""
from __future__ import annotations

import socket

SUPPORTED = hasattr(socket, "SO_REUSEPORT")


class WorkerListener(socket.socket):
    """A TCP socket bound to ``(host, port)`` with ``SO_REUSEPORT``; each unpickled copy is a new
    socket bound to the same address (``port=0`` is resolved once, in the first one)."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__(family, socket.SOCK_STREAM)
        try:
            self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.bind((host, port))
        except OSError:
            self.close()
            raise
        self.address = (host, self.getsockname()[1])

    def __reduce__(self):
        return WorkerListener, self.address
