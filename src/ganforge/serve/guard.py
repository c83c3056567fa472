"""What stands between the network and Gradio in ``ganforge serve``.

:class:`Guard` is a plain ASGI middleware around the whole app. It

* refuses, from their headers, uploads that Gradio would otherwise decode to
  RGBA before any ganforge code runs: an image above ``--max-pixels`` (a
  170 KB PNG can declare 13000x13000 pixels, 2.4 GB once decoded) or deeper
  than 8 bits (the page would clip it). The request body is read up to the
  byte limit, the header of every file in it is checked, and only then is the
  body handed on to Gradio;
* answers 404 for every route that fetches a URL for the caller
  (``file=<url>``, ``proxy=``) or keeps run history, and for routes this page
  does not use (monitoring, recording, code editing, MCP);
* turns any exception escaping the app into one log line and a 500.

:func:`refuse_outbound` is the second layer: it makes the URL-fetching helper
Gradio routes every download through (``safehttpx``) raise, so that a file
reference in a request body that names a URL is refused too.
:func:`quiet_console` replaces the tracebacks Gradio prints for each refused
value by one line.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
import types

import anyio

from ganforge.serve import handlers as H

log = logging.getLogger("ganforge.serve")

# Path segments (after Gradio's /gradio_api prefix, if any) this server never answers.
BLOCKED_SEGMENTS = frozenset({"runs", "run-history", "monitoring", "process_recording", "vibe-edit",
                              "undo-vibe-edit", "vibe-code", "mcp", "dev", "login", "logout", "custom_component"})
_URL_LIKE = re.compile(r"^(//|[a-zA-Z][a-zA-Z0-9+.-]+:)")  # "http://...", "//host", "data:..." (not "C:")
_MULTIPART_SLACK = 64 * 1024  # multipart boundaries and headers around the file bytes


def blocked(path: str) -> bool:
    """Whether ``path`` (decoded, as in the ASGI scope) is a route this server refuses."""
    for marker in ("file=", "proxy="):
        i = path.find(marker)
        if i >= 0:
            target = path[i + len(marker):]
            if marker == "proxy=" or _URL_LIKE.match(target):
                return True
    route = path.split("file=", 1)[0]  # a served file's own path may hold any folder name
    return any(seg in BLOCKED_SEGMENTS for seg in route.split("/"))


class Guard:
    """ASGI middleware: header checks of uploads, blocked routes, one-line errors (see the module doc)."""

    def __init__(self, app, max_pixels: int, max_mb: float):
        self.app = app
        self.max_pixels = max_pixels
        self.max_body = int(max_mb * 2**20) + _MULTIPART_SLACK

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if blocked(path):
            return await _plain(send, 404, "Not found")
        if scope.get("method") == "POST" and path.rstrip("/").endswith("/upload"):
            body, problem = await self._read_upload(scope, receive)
            if problem:
                log.warning("upload refused: %s", problem)
                return await _plain(send, 413, problem)
            receive = _replay(body)
        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:  # one line on the console, never a traceback
            log.error("request %s failed: %s", path[:120], _one_line(exc))
            if not started:
                await _plain(send, 500, "Internal error")

    async def _read_upload(self, scope, receive) -> tuple[bytes, str | None]:
        """The whole request body (at most the byte limit) and why it must be refused, or None."""
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        limit_msg = f"the upload is larger than the limit of {(self.max_body - _MULTIPART_SLACK) / 2**20:g} MB"
        if declared > self.max_body:
            return b"", limit_msg
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", "the client went away"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", limit_msg
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        return body, await self._check_files(scope, body)

    async def _check_files(self, scope, body: bytes) -> str | None:
        from starlette.requests import Request

        try:
            form = await Request(scope, _replay(body)).form(max_files=1000, max_fields=1000)
        except Exception:
            return None  # not a form we can read: Gradio answers it (with a 400)
        try:
            for _, value in form.multi_items():
                if hasattr(value, "file"):
                    value.file.seek(0)
                    name = (value.filename or "upload")[-80:]
                    problem = await anyio.to_thread.run_sync(H.header_problem, value.file, name, self.max_pixels)
                    if problem:
                        return problem
        finally:
            await form.close()
        return None


def _replay(body: bytes):
    """An ASGI ``receive`` that hands out ``body`` once, then waits like a quiet client."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()

    return receive


async def _plain(send, status: int, text: str) -> None:
    data = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


async def _refused(*args, **kwargs):
    raise PermissionError("ganforge serve does not fetch URLs")


def refuse_outbound() -> None:
    """Make every URL fetch Gradio does for a request (downloads of file references, ``file=<url>``) raise.

    Gradio routes them through ``safehttpx``; replacing its two entry points in
    this process (the server's only) is the one place that catches them all,
    including its DNS-over-HTTPS fallback that opened ``dns.google`` on demand.
    """
    import safehttpx

    safehttpx.get = _refused
    safehttpx.async_validate_url = _refused


def _print_one_line(*args, **kwargs) -> None:
    exc = sys.exc_info()[1]
    if exc is not None:
        log.warning("request refused: %s", _one_line(exc))


def quiet_console() -> None:
    """Gradio prints a full traceback for each value it refuses; print one line instead.

    Only the ``traceback`` name inside Gradio's request-handling modules is
    replaced (by a copy of the module whose ``print_exc`` logs one line).
    """
    import importlib

    shim = types.ModuleType("traceback")
    shim.__dict__.update({k: v for k, v in vars(traceback).items() if not k.startswith("__")})
    shim.print_exc = _print_one_line
    for name in ("gradio.queueing", "gradio.routes", "gradio.route_utils", "gradio.utils", "gradio.blocks"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "traceback", None) is traceback:
            module.traceback = shim
