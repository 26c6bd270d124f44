"""Start and stop a real ``targeting serve`` for the browser tests (used by conftest.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
USERS = 200_000  # enough that a 4-criterion spec stays above the privacy threshold of 100
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADVERTISER_KEY = "test-key-advertiser-acme-auto-01"
AD_SERVER_KEY = "test-key-ad-server-00000000001"


def missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: refusing to skip the browser tests)", pytrace=False)
    pytest.skip(reason)


def chromium_binary() -> str | None:
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_command() -> list[str]:
    exe = Path(sys.executable).with_name("targeting")
    if exe.exists():
        return [str(exe), "serve"]
    return [
        sys.executable,
        "-c",
        "import sys; from targeting.cli import main; sys.exit(main())",
        "serve",
    ]


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def post(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            return client.post(path, json=body, headers=headers)


def start_service(tmp: Path, profiles: Path, *extra: str) -> Service:
    port = _free_port()
    log = tmp / f"serve-{port}.log"
    env = {**os.environ, "TARGETING_HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1"}
    cmd = [
        *_serve_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--profiles",
        str(profiles),
        *extra,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Service(url, proc, log)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_service(proc)
    pytest.fail(f"`{' '.join(cmd)}` did not come up:\n{log.read_text()[-3000:]}", pytrace=False)


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
