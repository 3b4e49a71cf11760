"""The stand-in server: an asyncio HTTP/1.1 server impersonating LLM backends."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any

from .behaviour import Behaviour
from .common import Reply, json_reply
from .httpio import (
    LAST_CHUNK,
    READ_LIMIT,
    BadRequest,
    Request,
    abort_with_reset,
    chunk,
    encode_headers,
    fixed_response,
    read_request,
    stream_head,
)
from .routes import (
    answer,
    error_reply,
    garbage,
    leak_message,
    leaking,
    parse_json,
    protocol_for,
    recorded_json,
)
from .sim import MODEL_CALLS, SIM_PATHS, ServerSim

CONTROL_PATHS = frozenset({"/_control", "/_stats", "/_reset"})
STATS_LAST = 50
_OK = b'{"ok":true}'


class StandIn:
    """A fake OpenAI/vLLM + Ollama + Anthropic server on ``host:port``.

    Use :meth:`start`/:meth:`stop` (its own event loop in a daemon thread) or,
    inside a running loop, ``await start_async()`` / ``await stop_async()``.
    """

    def __init__(
        self,
        name: str = "standin",
        host: str = "127.0.0.1",
        port: int = 0,
        behaviour: Behaviour | None = None,
        record_limit: int = 10_000,
        sim: ServerSim | None = None,
    ) -> None:
        self.name = name
        #: The simulated cached, queueing server (``standin.sim``), when in sim mode.
        self.sim = sim
        self.host = host
        self._requested_port = port
        self.port = port
        self._default = behaviour or Behaviour()
        self._behaviour = self._default
        self._records: deque[dict[str, Any]] = deque(maxlen=record_limit)
        self._count = 0
        self._probes = 0
        self._active = 0  # requests being answered now, and the most at once since reset
        self._peak = 0
        self._lock = threading.Lock()
        self._extra = f"X-Standin-Name: {name}\r\n".encode("latin-1")
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- public state --------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    def set_behaviour(self, **fields: Any) -> Behaviour:
        """Change behaviour fields (ValueError on unknown/invalid); applies to new requests."""
        self._behaviour = self._behaviour.updated(**fields)
        return self._behaviour

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded model calls (every request but a GET; oldest first): at (monotonic
        arrival), method, path, query, headers, json. GETs are the gateway's background health
        probes, which may land at any time after a gateway starts: ``all_requests`` has them."""
        with self._lock:
            return [r for r in self._records if r["method"] != "GET"]

    @property
    def all_requests(self) -> list[dict[str, Any]]:
        """Every recorded request, GETs included (oldest first)."""
        with self._lock:
            return list(self._records)

    @property
    def count(self) -> int:
        """Model calls (every request but a GET) since the last reset."""
        return self._count

    @property
    def probes(self) -> int:
        """GET requests (model lists: the gateway's health probes) since the last reset."""
        return self._probes

    @property
    def peak(self) -> int:
        """The most model calls answered at once since start or ``reset``."""
        return self._peak

    def reset(self) -> None:
        """Forget recorded requests and restore the behaviour given at construction."""
        with self._lock:
            self._records.clear()
            self._count = self._probes = 0
            self._peak = self._active
        self._behaviour = self._default

    def stats(self) -> dict[str, Any]:
        with self._lock:
            last = list(self._records)[-STATS_LAST:]
            count = self._count
        return {
            "name": self.name,
            "count": count,
            "peak": self._peak,
            "requests": last,
            "behaviour": self._behaviour.to_dict(),
        }

    # -- lifecycle -----------------------------------------------------------
    async def start_async(self) -> int:
        """Bind and start serving in the running loop; returns the bound port."""
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self._requested_port, limit=READ_LIMIT, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop_async(self) -> None:
        """Stop listening and drop every open connection (including hung ones)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def start(self) -> int:
        """Serve from a daemon thread with its own event loop; returns the bound port."""
        if self._thread is not None:
            raise RuntimeError("stand-in already started")
        ready = threading.Event()
        errors: list[BaseException] = []
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run_thread,
            args=(loop, ready, errors),
            name=f"standin-{self.name}",
            daemon=True,
        )
        thread.start()
        if not ready.wait(timeout=10):
            raise RuntimeError("stand-in did not start within 10 s")
        if errors:
            thread.join()
            raise errors[0]
        self._loop, self._thread = loop, thread
        return self.port

    def _run_thread(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, errors: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.start_async())
        except BaseException as exc:
            errors.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self.stop_async())
        loop.close()

    def stop(self) -> None:
        """Stop the thread started by :meth:`start` (no-op if not running)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> StandIn:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- connections ---------------------------------------------------------
    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            keep = True
            while keep:
                request = await read_request(reader)
                if request is None:
                    break
                keep = await self._handle(request, writer) and request.keep_alive
        except BadRequest as exc:
            writer.write(fixed_response(400, "text/plain", str(exc).encode(), self._extra, False))
        except (ConnectionError, asyncio.CancelledError):
            pass  # client went away, or stop_async() is dropping us: both end quietly
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _handle(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must not be reused."""
        behaviour = self._behaviour
        if request.path in CONTROL_PATHS:
            return await self._send(writer, self._control(request), request.keep_alive, behaviour)
        if self.sim is not None and request.path in SIM_PATHS:
            return await self._send(writer, self._sim_page(request), request.keep_alive,
                                    behaviour)
        if request.method == "GET":  # a model list or a health probe: not a model call
            return await self._answer(request, writer, behaviour)
        with self._lock:
            self._active += 1
            self._peak = max(self._peak, self._active)
        try:
            return await self._answer(request, writer, behaviour)
        finally:
            with self._lock:
                self._active -= 1

    async def _answer(self, request: Request, writer: asyncio.StreamWriter,
                      behaviour: Behaviour) -> bool:
        parsed = parse_json(request.body)
        self._record(request, recorded_json(parsed))
        if (self.sim is not None and behaviour.mode == "ok" and isinstance(parsed, dict)
                and request.path in MODEL_CALLS and not behaviour.fail_marker):
            async with self.sim.serve(parsed, behaviour):
                reply = self._reply(request, parsed, behaviour)
                return await self._send(writer, reply, request.keep_alive, behaviour)
        if behaviour.fail_marker and behaviour.fail_marker.encode() in request.body:
            behaviour = behaviour.updated(mode="status")
        if behaviour.generation_only and request.method != "POST":
            behaviour = behaviour.updated(mode="ok")
        if behaviour.mode == "hang":
            await asyncio.Event().wait()  # until stop_async() cancels us
        if behaviour.first_delay:
            await asyncio.sleep(behaviour.first_delay)
        if behaviour.mode == "reset":
            abort_with_reset(writer)
            return False
        reply = self._reply(request, parsed, behaviour)
        if behaviour.mode == "die_mid_stream":
            if reply.frames is None:
                writer.close()
                return False
            return await self._stream(writer, reply, False, behaviour, behaviour.die_after)
        if behaviour.mode == "garbage":
            reply = garbage(reply, protocol_for(request.path))
        if behaviour.mode == "leak_mid_stream" and reply.status == 200:
            reply = leaking(reply, protocol_for(request.path),
                            leak_message(request.headers, request.path), behaviour.die_after)
        return await self._send(writer, reply, request.keep_alive, behaviour)

    def _reply(self, request: Request, parsed: Any, behaviour: Behaviour) -> Reply:
        if behaviour.mode == "leak":
            return error_reply(protocol_for(request.path), behaviour.status_code,
                               leak_message(request.headers, request.path))
        if behaviour.mode != "status":
            return answer(request.method, request.path, parsed, behaviour)
        headers: tuple[tuple[str, str], ...] = ()
        if behaviour.retry_after is not None:
            headers = (("Retry-After", f"{behaviour.retry_after:g}"),)
        message = f"standin {self.name}: simulated HTTP {behaviour.status_code}"
        return error_reply(protocol_for(request.path), behaviour.status_code, message, headers)

    def _sim_page(self, request: Request) -> Reply:
        sim = self.sim
        assert sim is not None
        if request.path == "/_sim":
            if request.method == "POST":
                try:
                    fields = json.loads(request.body or b"{}")
                    if not isinstance(fields, dict):
                        raise ValueError("expected a JSON object of sim fields")
                    if fields.pop("clear", False):
                        sim.clear()
                    sim.update(**fields)
                except (ValueError, TypeError) as exc:
                    return json_reply({"ok": False, "error": str(exc)}, 400)
            return json_reply(sim.stats())
        if sim.params.metrics_status != 200:
            return json_reply({"error": "simulated failure"}, sim.params.metrics_status)
        if request.path == "/metrics":
            return Reply(content_type="text/plain; version=0.0.4",
                         body=sim.metrics_text().encode())
        return json_reply(sim.ps_body())

    def _record(self, request: Request, body: Any) -> None:
        entry = {
            "at": time.monotonic(),  # when it arrived (this process's monotonic clock)
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "json": body,
        }
        with self._lock:
            self._records.append(entry)
            if request.method == "GET":
                self._probes += 1
            else:
                self._count += 1

    def _control(self, request: Request) -> Reply:
        if request.method == "GET" and request.path == "/_stats":
            return json_reply(self.stats())
        if request.method == "GET" and request.path == "/_control":
            return json_reply(self._behaviour.to_dict())
        if request.method != "POST" or request.path == "/_stats":
            return json_reply({"ok": False, "error": "method not allowed"}, 405)
        if request.path == "/_reset":
            self.reset()
            return Reply(body=_OK)
        try:
            fields = json.loads(request.body or b"{}")
            if not isinstance(fields, dict):
                raise ValueError("expected a JSON object of behaviour fields")
            self.set_behaviour(**fields)
        except (ValueError, TypeError) as exc:
            return json_reply({"ok": False, "error": str(exc)}, 400)
        return Reply(body=_OK)

    # -- writing -------------------------------------------------------------
    async def _send(
        self, writer: asyncio.StreamWriter, reply: Reply, keep: bool, behaviour: Behaviour
    ) -> bool:
        if reply.frames is not None:
            return await self._stream(writer, reply, keep, behaviour, None)
        extra = self._extra + encode_headers(reply.headers) if reply.headers else self._extra
        writer.write(fixed_response(reply.status, reply.content_type, reply.body, extra, keep))
        await writer.drain()
        return keep

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        reply: Reply,
        keep: bool,
        behaviour: Behaviour,
        die_after: int | None,
    ) -> bool:
        """Write ``reply.frames`` one chunk each; with ``die_after``, cut the stream short."""
        frames = reply.frames or []
        if die_after is not None:
            frames = frames[:die_after]
        pending = stream_head(reply.status, reply.content_type, self._extra, keep)
        for index, frame in enumerate(frames):
            if index and behaviour.token_delay:
                await asyncio.sleep(behaviour.token_delay)
            writer.write(pending + chunk(frame))
            pending = b""
            await writer.drain()
        if die_after is not None:
            if pending:
                writer.write(pending)
            await writer.drain()
            writer.close()  # FIN with no terminating chunk: an incomplete body
            return False
        writer.write(pending + LAST_CHUNK)
        await writer.drain()
        return keep
