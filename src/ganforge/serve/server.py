"""Running the page: a private work folder, the guarded ASGI app, and uvicorn on a socket we bind.

The server is run here rather than by ``Blocks.launch``: launch checks that it
can reach itself over HTTP (which fails when ``HTTPS_PROXY`` is set and
``NO_PROXY`` does not cover loopback), prints a ``share=True`` hint a command-line
user cannot act on, and offers no place for :class:`~ganforge.serve.guard.Guard`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import warnings
from pathlib import Path

from ganforge.errors import ConfigError

log = logging.getLogger("ganforge.serve")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Stopped(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` (the work folder's removal) runs."""


def _on_sigterm(signum, frame):
    raise Stopped()


@contextlib.contextmanager
def work_dir():
    """A private ``ganforge-serve-*`` folder for results and Gradio's uploads; removed on any exit.

    Gradio keeps uploads in ``GRADIO_TEMP_DIR``, read when the page is built, so
    it is pointed inside this folder; SIGTERM is turned into an exception for the
    time the folder exists so that it is removed then too.
    """
    path = Path(tempfile.mkdtemp(prefix="ganforge-serve-"))
    previous = {k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR",)}
    os.environ["GRADIO_TEMP_DIR"] = str(path / "uploads")
    try:
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (tests): no handler
        old_term = None
    try:
        yield path
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(path, ignore_errors=True)


def no_proxy_for_loopback() -> None:
    """Requests to this machine never go through a proxy (in this process and what it starts)."""
    for key in ("NO_PROXY", "no_proxy"):
        have = [h.strip() for h in os.environ.get(key, "").split(",") if h.strip()]
        os.environ[key] = ",".join(have + [h for h in LOOPBACK if h not in have])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a ConfigError naming ``--port`` when that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
    except (OSError, UnicodeError) as exc:  # port taken, address not on this machine, bad host name
        text = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError("--port", f"cannot serve on {host}:{port}: {' '.join(str(text).split())}") from None
    sock.set_inheritable(True)
    return sock


def run(blocks, host: str, port: int, max_pixels: int, max_mb: float, theme) -> None:
    """Serve ``blocks`` until SIGINT/SIGTERM: guarded, no run history, no share link, quiet console."""
    import fastapi
    import gradio as gr
    import uvicorn
    from PIL import Image

    from ganforge.serve.guard import Guard, quiet_console, refuse_outbound

    # Whatever decodes an image in this process (Gradio's preprocessing included) checks its header
    # first: Pillow refuses more than 2 x MAX_IMAGE_PIXELS before decoding a pixel.
    Image.MAX_IMAGE_PIXELS = max(1, max_pixels // 2)
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    refuse_outbound()
    quiet_console()
    no_proxy_for_loopback()
    sock = bind(host, port)
    blocks.queue(default_concurrency_limit=1)  # one model call at a time: CPU inference does not overlap well
    parent = fastapi.FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    gr.mount_gradio_app(parent, blocks, "/", server_name=host, server_port=port, footer_links=[],
                        run_history=False, show_error=False, max_file_size=f"{max_mb:g}mb", ssr_mode=False,
                        mcp_server=False, enable_monitoring=False, pwa=False, theme=theme)
    config = uvicorn.Config(Guard(parent, max_pixels, max_mb), log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving on http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
