"""A real ``ganforge serve`` process, talked to over HTTP on 127.0.0.1: what it refuses and what it never does.

The server runs with ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` pointing at a
listener of this test (and no ``NO_PROXY``): any outbound request it made would
arrive there. Uploads are multipart POSTs as the page sends them; handlers are
called through Gradio's ``/gradio_api/call/<name>`` API.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_runs import wait_until_serving

pytest.importorskip("gradio")
pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[1] / "src"
READY_S = 120
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the test itself never uses the proxy


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection (the stand-in proxy)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.seen.append(conn.recv(4096) or b"<connected>")
                except OSError:
                    self.seen.append(b"<connected>")

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: list[Path], log_path: Path, tmpdir: Path, env_extra: dict, *args: str):
    tmpdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy",
                                                                    "all_proxy")}
    env.update({"PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
                "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmpdir), **env_extra})
    log = open(log_path, "w+")
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "serve", *map(str, runs), "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(proc, url + "/", log, READY_S, fetch=OPENER.open)
    return proc, url, log


def stop_server(proc, log, sig=signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        rc = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait(10)
    log.close()
    return rc


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get(url: str) -> tuple[int, str]:
    try:
        with OPENER.open(url, timeout=15) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def upload(url: str, name: str, data: bytes) -> tuple[int, str]:
    boundary = "ganforgeTestBoundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/gradio_api/upload", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with OPENER.open(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def call(url: str, name: str, data: list) -> tuple[str, object]:
    """``(event, payload)`` of one call of the handler ``name`` through Gradio's API."""
    req = urllib.request.Request(f"{url}/gradio_api/call/{name}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    with OPENER.open(req, timeout=15) as r:
        event_id = json.load(r)["event_id"]
    with OPENER.open(f"{url}/gradio_api/call/{name}/{event_id}", timeout=120) as r:
        text = r.read().decode()
    event = text.split("event: ")[-1].split("\n")[0]
    payload = json.loads(text.split("data: ")[-1].split("\n")[0])
    return event, payload


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    b = io.BytesIO()
    img.save(b, fmt)
    return b.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from serve_runs import make_runs

    return make_runs(tmp_path_factory.mktemp("serve-runs"))


@pytest.fixture(scope="module")
def served(runs, tmp_path_factory):
    """The server with both runs, proxies pointing at a listener; yields (url, proc, listener, log path, tmpdir)."""
    tmp = tmp_path_factory.mktemp("served")
    listener = Listener()
    proxy = f"http://127.0.0.1:{listener.port}"
    env = {"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "ALL_PROXY": proxy, "http_proxy": proxy,
           "https_proxy": proxy}
    proc, url, log = start_server([runs / "cgan", runs / "inpaint"], tmp / "server.log", tmp / "tmp", env)
    state = {"rc": None}
    try:
        yield url, proc, listener, tmp, state
    finally:
        if proc.poll() is None:
            state["rc"] = stop_server(proc, log)
        listener.close()


def test_decompression_bomb_and_deep_images_are_refused_from_their_headers(served):
    url, proc, _, _, _ = served
    bomb = png_bytes(Image.new("1", (13000, 13000)))  # ~20 KB; 676 MB as RGBA
    assert len(bomb) < 200_000
    code, text = upload(url, "bomb.png", bomb)
    assert code == 413 and "169,000,000 pixels; the limit is 1,048,576 pixels" in text
    deep = png_bytes(Image.fromarray((np.arange(784, dtype=np.uint16).reshape(28, 28) * 80)))
    code, text = upload(url, "deep.png", deep)
    assert code == 413 and "16-bit pixels" in text and "ganforge inpaint" in text
    code, text = upload(url, "float.tif", png_bytes(Image.fromarray(np.random.rand(8, 8).astype(np.float32)), "TIFF"))
    assert code == 413 and "floating-point" in text
    code, text = upload(url, "ok.png", png_bytes(Image.new("L", (28, 28))))
    assert code == 200 and json.loads(text)[0].endswith("ok.png")
    assert peak_rss_mb(proc.pid) < 1024


def test_no_outbound_requests_and_no_run_history(served):
    url, _, listener, _, _ = served
    for path in ("/gradio_api/file=http://localhost:1/x.png", "/gradio_api/file=https://example.com/x.png",
                 "/file=http://localhost:1/x.png", "/gradio_api/file=//example.com/x.png",
                 "/gradio_api/proxy=http://localhost:1/x", "/gradio_api/runs", "/gradio_api/run-history/buckets",
                 "/gradio_api/monitoring"):
        code, _ = get(url + path)
        assert code == 404, path
    # A file reference naming a URL inside a request body: refused, not fetched.
    event, _ = call(url, "on_image", [{"path": "http://localhost:1/x.png", "meta": {"_type": "gradio.FileData"}}])
    assert event == "error"
    time.sleep(1.0)
    assert listener.seen == []


def test_page_handlers_refuse_bad_values_with_a_message(served):
    url, _, _, _, _ = served
    event, out = call(url, "on_generate", ["cgan", 2**63, 4, "random", 0])
    assert event == "complete" and "seed: must be a whole number" in out[-1]
    event, out = call(url, "on_interpolate", ["cgan", 0, float("1e30"), 4, "random", 0])
    assert event == "complete" and "seed B: must be a whole number" in out[-1]
    event, _ = call(url, "on_generate", ["cgan", 3, 4, "no such class", 0])  # refused by Gradio itself
    assert event == "error"
    event, out = call(url, "on_run", ["cgan"])  # a run change clears the images on show
    assert event == "complete" and out[1:] == [None, "", None, ""]
    event, out = call(url, "on_generate", ["cgan", 3, 4, "random", 0])
    assert event == "complete" and "seed 3" in out[-1]


def test_stopping_removes_the_work_folder_and_the_console_stays_one_line(served):
    url, proc, _, tmp, state = served
    assert list((tmp / "tmp").glob("ganforge-serve-*"))  # results and uploads live there while serving
    state["rc"] = stop_server(proc, open(os.devnull))
    assert state["rc"] == 0
    assert not list((tmp / "tmp").glob("ganforge-serve-*"))
    log = (tmp / "server.log").read_text()
    assert "Traceback" not in log and "share=True" not in log and "serving on http://127.0.0.1:" in log
    assert "upload refused" in log and "request refused" in log


def test_ctrl_c_removes_the_work_folder_and_a_generation_only_server_has_no_inpaint_tab(runs, tmp_path):
    proc, url, log = start_server([runs / "cgan"], tmp_path / "server.log", tmp_path / "tmp", {})
    config = json.loads(get(url + "/config")[1])
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert "tab-generate" in ids and "tab-inpaint" not in ids
    assert stop_server(proc, log, signal.SIGINT) == 0
    assert not list((tmp_path / "tmp").glob("ganforge-serve-*"))
