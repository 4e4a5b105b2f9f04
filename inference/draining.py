"""Graceful stop for `serve`: a SIGTERM (`docker stop`, SageMaker replacing an instance) loses no
request that already reached the server.

uvicorn's own shutdown closes the listening socket at once, which resets every connection still
waiting in its accept queue, and closes every accepted connection whose request has not been read
yet. Under load both happen to requests that clients had already sent. This server first keeps
listening until the accept queue is empty and every open connection has started its request (a
short quiet period, bounded by CONVLAB_SHUTDOWN_GRACE_S), and only then runs uvicorn's drain,
which waits for the requests in flight to finish.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket

import uvicorn

log = logging.getLogger("convlab.serve")

GRACE_ENV = "CONVLAB_SHUTDOWN_GRACE_S"
QUIET_S = 0.25  # no new connection and none waiting for this long: the queue is empty


def _waiting(connection) -> bool:
    """A connection that was accepted but whose request has not been read yet."""
    transport = getattr(connection, "transport", None)
    return getattr(connection, "cycle", False) is None and transport is not None and not transport.is_closing()


class DrainingServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        connections = getattr(self.server_state, "connections", set())
        grace = float(os.environ.get(GRACE_ENV, "3.0"))
        deadline = loop.time() + grace
        seen, quiet_since = len(connections), loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(0.02)
            current = list(connections)
            if len(current) != seen or any(_waiting(c) for c in current):
                seen, quiet_since = len(current), loop.time()
            elif loop.time() - quiet_since >= QUIET_S:
                break
        log.info("stopping: %d connection(s) open, draining %d request(s) in flight", len(connections),
                 len(getattr(self.server_state, "tasks", ())))
        await super().shutdown(sockets)
