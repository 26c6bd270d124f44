"""Through a real socket: uvicorn on a free loopback port, httpx as the client.
Decides keep answering, each consistent with the index version it names, while
rules are reloaded back and forth."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from svc import KEYS, REPO, write_rules

from service import Settings, create_app
from targeting import Engine

V1 = [{"id": "one", "advertiser": "a1", "bid": {"cpm": 1}, "category": "food", "targeting": {}}]
V2 = [{"id": "two", "advertiser": "a2", "bid": {"cpm": 2}, "category": "food", "targeting": {}}]


def free_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    rules = write_rules(tmp_path / "rules", V1)
    app = create_app(Engine.load(rules), Settings())
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = sock.getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", rules
    finally:
        server.should_exit = True
        t.join(10)
        sock.close()


def test_decide_over_a_socket_while_reloading(served: tuple[str, Path]) -> None:
    base, rules = served
    expected = {}
    with httpx.Client(base_url=base, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        expected[c.get("/healthz").json()["index_version"]] = ["one"]
        write_rules(rules, V2)
        expected[c.post("/v1/campaigns/reload").json()["index_version"]] = ["two"]

    answers: list[dict] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=base, timeout=10) as c:
            while not stop.is_set():
                r = c.post("/v1/decide", json={"user_id": "u"})
                if r.status_code != 200:
                    failures.append(r.text)
                answers.append(r.json())

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for w in workers:
        w.start()
    with httpx.Client(base_url=base, timeout=10) as c:
        for i in range(10):
            write_rules(rules, V1 if i % 2 == 0 else V2)
            assert c.post("/v1/campaigns/reload").status_code == 200
            time.sleep(0.02)
        # a bad file in between is refused; decides go on
        write_rules(rules, "- id: [broken\n")
        assert c.post("/v1/campaigns/reload").status_code == 422
    stop.set()
    for w in workers:
        w.join(10)
    assert not failures
    assert len(answers) > 10
    seen = set()
    for a in answers:
        assert [d["campaign_id"] for d in a["decisions"]] == expected[a["index_version"]]
        seen.add(a["index_version"])
    assert seen == set(expected)  # both versions were served


@contextmanager
def targeting_serve(tmp_path: Path, rules: Path, *args: str) -> Iterator[str]:
    """`targeting serve` as a subprocess on a free port; yields its base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "TARGETING_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "targeting.cli", "serve", "--rules", str(rules), "--port", str(port),
         "--no-demo", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "targeting serve did not come up"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode()
    assert "Uvicorn running" in out or "Started parent process" in out, out


def test_targeting_serve_command(tmp_path: Path) -> None:
    """`targeting serve` end to end: a subprocess with --auth, on a free port."""
    rules = write_rules(tmp_path / "rules", V1)
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"- {{key: {KEYS['ad_server']}, role: ad_server}}\n")
    with targeting_serve(tmp_path, rules, "--auth", str(keys)) as base:
        assert httpx.post(f"{base}/v1/decide", json={"user_id": "u"}).status_code == 401
        r = httpx.post(f"{base}/v1/decide", json={"user_id": "u"},
                       headers={"Authorization": f"Bearer {KEYS['ad_server']}"})
        assert r.status_code == 200 and r.json()["decisions"][0]["campaign_id"] == "one"


def test_reload_reaches_every_worker_process(tmp_path: Path) -> None:
    """`targeting serve --workers 2`: the reload one worker answers reaches the other."""
    rules = write_rules(tmp_path / "rules", V1)
    with targeting_serve(tmp_path, rules, "--workers", "2") as base, httpx.Client(base_url=base) as c:
        write_rules(rules, V2)
        v2 = c.post("/v1/campaigns/reload").json()["index_version"]
        deadline = time.monotonic() + 10
        while True:  # connections are spread over the workers: 20 answers in a row on v2
            versions = {httpx.get(f"{base}/healthz").json()["index_version"] for _ in range(20)}
            if versions == {v2}:
                break
            assert time.monotonic() < deadline, versions
            time.sleep(0.2)
