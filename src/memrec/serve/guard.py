"""ASGI middleware in front of the service: the Host check, a request-body size limit, per-route metrics.

A request whose ``Host`` header names no allowed host is answered 400: a service on loopback must
not be reachable from a browser through DNS rebinding (a page of evil.example whose name now
resolves to 127.0.0.1 sends ``Host: evil.example``). Bodies are read here, up to ``max_body_bytes``
(whatever ``Content-Length`` says, chunked or not), and a larger one is answered 413 before the
application parses anything.
"""
from __future__ import annotations

import json
import time


class Guard:
    """``allowed_hosts``: host names and addresses (IPv6 in brackets), ``*.example.com``, or ``*`` for any."""

    def __init__(self, app, allowed_hosts: list[str], max_body_bytes: int, metrics):
        self.app, self.max_body_bytes, self.metrics = app, max_body_bytes, metrics
        self.allowed_hosts = [h.lower() for h in allowed_hosts]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_and_watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            host = host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if not any(allowed in ("*", host) or (allowed.startswith("*.") and host.endswith(allowed[1:]))
                       for allowed in self.allowed_hosts):
                return await _reply(send_and_watch, 400, f"this service answers to the hosts {', '.join(self.allowed_hosts)}, "
                                                         f"not {host!r}; add it with --allowed-hosts")
            body, too_large = await self._read_body(scope, receive)
            if too_large:
                return await _reply(send_and_watch, 413, f"request body larger than {self.max_body_bytes} bytes")
            await self.app(scope, _replay(body, receive), send_and_watch)
        finally:
            route = scope.get("route")
            self.metrics.observe(scope["method"], getattr(route, "path", "unmatched"), status[0], time.perf_counter() - start)

    async def _read_body(self, scope, receive) -> tuple[bytes, bool]:
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return b"", True
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), False


def host_name(header: str) -> str:
    """The host of a ``Host`` header, lower case, without its port (an IPv6 address keeps its brackets).

    Example:
        >>> host_name("Example.com:8000"), host_name("[::1]:8000"), host_name("127.0.0.1")
        ('example.com', '[::1]', '127.0.0.1')
    """
    return (header[: header.find("]") + 1] if header.startswith("[") else header.split(":")[0]).lower()


def _replay(body: bytes, receive):
    sent = [False]

    async def replay():
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay


async def _reply(send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
