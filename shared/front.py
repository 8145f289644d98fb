"""The local stack's front: one base URL routing paths to the functions, as the load balancer does.

asyncio + h11, streaming both ways: request bodies go upstream chunk by chunk as they arrive and responses
come back the same way, over kept-alive connections pooled per function. It adds nothing a load balancer would
not (X-Forwarded-For/-Proto) and answers 404 for a path no public function serves, 502 when a function does
not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

import h11

Resolve = Callable[[str], "tuple[str, int] | None"]  # path -> upstream (host, port), None = no route
_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"upgrade", b"te", b"trailer"}
_READ = 65536


class _Upstream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    async def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(_READ))
                continue
            return event

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Front:
    def __init__(self, resolve: Resolve, host: str = "127.0.0.1", port: int = 0, pool_size: int = 256) -> None:
        self._resolve = resolve
        self._host, self._port = host, port
        self._pool_size = pool_size
        self._pools: dict[tuple[str, int], list[_Upstream]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ---- lifecycle (a thread with its own event loop) -----------------------------------------
    def start(self) -> int:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._client, self._host, self._port, backlog=1024))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # report to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="local-front", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self.port

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for pool in self._pools.values():
                for up in pool:
                    up.close()
            self._pools.clear()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    # ---- proxying -----------------------------------------------------------------------------
    async def _acquire(self, target: tuple[str, int]) -> _Upstream:
        pool = self._pools.setdefault(target, [])
        while pool:
            up = pool.pop()
            if not up.reader.at_eof():
                return up
            up.close()
        reader, writer = await asyncio.open_connection(*target)
        return _Upstream(reader, writer)

    def _release(self, target: tuple[str, int], up: _Upstream) -> None:
        if up.conn.our_state is h11.DONE and up.conn.their_state is h11.DONE:
            up.conn.start_next_cycle()
            pool = self._pools.setdefault(target, [])
            if len(pool) < self._pool_size:
                pool.append(up)
                return
        up.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        peer = (writer.get_extra_info("peername") or ("",))[0]

        async def send(event: Any) -> None:
            data = conn.send(event)
            if data:
                writer.write(data)
                await writer.drain()

        async def next_event() -> Any:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(_READ))
                    continue
                return event

        try:
            while True:
                event = await next_event()
                if not isinstance(event, h11.Request):
                    break
                await self._one(event, next_event, send, peer)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                # Read what the client left of its body (unread when we answered early), then go on.
                while conn.their_state is h11.SEND_BODY:
                    if isinstance(await next_event(), h11.EndOfMessage):
                        break
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _one(self, req: h11.Request, next_event: Any, send: Any, peer: str) -> None:
        path = req.target.split(b"?", 1)[0].decode("latin-1")
        target = self._resolve(path)
        if target is None:
            await self._answer(send, 404, {"error": {"code": "not_found", "message": f"no route {path[:100]}"}})
            return
        headers = [(k, v) for k, v in req.headers if k.lower() not in _HOP]
        headers += [(b"x-forwarded-for", peer.encode()), (b"x-forwarded-proto", b"http")]
        try:
            up = await self._acquire(target)
        except OSError:
            await self._answer(send, 502, {"error": {"code": "bad_gateway", "message": "function not reachable"}})
            return
        bodiless = not any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in req.headers)
        started = False
        client_done = False
        for attempt in (1, 2):
            ok = False
            try:
                await up.send(h11.Request(method=req.method, target=req.target, headers=headers))
                if bodiless:
                    if not client_done:
                        await next_event()  # the client's EndOfMessage
                        client_done = True
                    await up.send(h11.EndOfMessage())
                else:
                    while True:  # stream the request body
                        event = await next_event()
                        if isinstance(event, h11.Data):
                            await up.send(h11.Data(data=event.data))
                        elif isinstance(event, h11.EndOfMessage):
                            await up.send(h11.EndOfMessage())
                            break
                        else:
                            raise h11.RemoteProtocolError("unexpected event in request body")
                response = await up.next_event()
                while isinstance(response, h11.InformationalResponse):
                    response = await up.next_event()
                if not isinstance(response, h11.Response):
                    raise ConnectionError("upstream closed before answering")
                out = [(k, v) for k, v in response.headers if k.lower() not in _HOP]
                started = True
                await send(h11.Response(status_code=response.status_code, headers=out, reason=response.reason))
                while True:  # stream the response body
                    event = await up.next_event()
                    if isinstance(event, h11.Data):
                        await send(h11.Data(data=event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        await send(h11.EndOfMessage())
                        break
                    else:
                        raise h11.RemoteProtocolError("upstream closed mid-response")
                ok = True
                return
            except (h11.ProtocolError, ConnectionError, OSError):
                up.close()
                # A pooled connection the function closed while idle: a bodiless request goes again, fresh.
                if started or not bodiless or attempt == 2:
                    if not started:
                        await self._answer(send, 502, {"error": {"code": "bad_gateway",
                                                                 "message": "function did not answer"}})
                        return
                    raise ConnectionError("upstream failed") from None
                reader, writer = await asyncio.open_connection(*target)
                up = _Upstream(reader, writer)
            finally:
                if ok:
                    self._release(target, up)
    @staticmethod
    async def _answer(send: Any, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        await send(h11.Response(status_code=status, headers=[(b"content-type", b"application/json"),
                                                             (b"content-length", str(len(data)).encode())]))
        await send(h11.Data(data=data))
        await send(h11.EndOfMessage())
