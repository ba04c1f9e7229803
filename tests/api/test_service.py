"""Health, readiness, metrics, OpenAPI, the widget script, the demo page and `copines serve`."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def test_health_and_readiness(client: httpx.Client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"store": True, "embedder": True}}


def test_metrics_are_prometheus_text(client: httpx.Client):
    client.post("/api/chat", json={"message": "Comment créer un tunnel de vente ?"})
    client.post("/api/chat", json={"message": ""})
    # /api/chat feeds the metrics just after answering: give it a moment.
    deadline = time.monotonic() + 5
    while True:
        response = client.get("/metrics")
        assert response.status_code == 200
        text = response.text
        if "copines_turns_total{" in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert response.headers["content-type"].startswith("text/plain")
    assert re.search(r'copines_turns_total\{expert="\w+",router="\w+"\} 1\.0', text)
    assert 'copines_turn_step_seconds_bucket{le="0.005",step="total"}' in text
    assert 'copines_http_errors_total{status="422"} 1.0' in text
    assert "copines_escalations_total" in text
    assert "copines_rate_limited_total" in text or "copines_rate_limited" in text


def test_openapi_documents_the_public_routes(client: httpx.Client):
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/chat",
        "/api/chat/stream",
        "/api/conversations/{conversation_id}",
        "/api/feedback",
    ):
        assert path in spec["paths"], path
    assert spec["paths"]["/api/chat"]["post"]["summary"]
    assert "429" in spec["paths"]["/api/chat"]["post"]["responses"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI's files are ours: no CDN.
    assert not re.search(r"(src|href)=[\"']https?://", docs.text), docs.text
    for asset in re.findall(r"(?:src|href)=[\"'](/docs-static/[^\"']+)", docs.text):
        assert client.get(asset).status_code == 200, asset
    assert "/docs-static/swagger-ui-bundle.js" in docs.text


def test_the_widget_script_is_self_contained(client: httpx.Client):
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    script = response.text
    assert "__COPINES_" not in script
    assert "attachShadow" in script and ":host" in script
    for expected in ("Audrey", "Carole", "#2F6FDE", "Ouvrir le chat"):
        assert expected in script
    # No CDN, font or tracker: the only URLs are the SVG namespace and the agency's privacy
    # policy (a link the visitor may follow; nothing is loaded from it).
    urls = set(re.findall(r"https?://[^\s\"')]+", script))
    assert urls == {"http://www.w3.org/2000/svg", "https://lagencedescopines.com/confidentialite"}
    cached = client.get("/widget.js", headers={"If-None-Match": response.headers["etag"]})
    assert cached.status_code == 304


def test_the_demo_page_embeds_the_widget(client: httpx.Client):
    page = client.get("/")
    assert page.status_code == 200
    assert '<html lang="fr">' in page.text
    assert 'src="/widget.js"' in page.text
    assert "Audrey" in page.text and "Carole" in page.text
    assert not re.search(r"(src|href)=\"https?://", page.text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_copines_serve_runs_the_service(tmp_path: Path, knowledge_url: str):
    copines = Path(sys.executable).with_name("copines")
    command = [str(copines)] if copines.exists() else [sys.executable, "-m", "copines.cli"]
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COPINES_") and k not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update(DATABASE_URL=knowledge_url, COPINES_DATA_DIR=str(tmp_path))
    process = subprocess.Popen(
        [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "copines serve did not become ready"
            time.sleep(0.3)
        turn = httpx.post(
            f"http://127.0.0.1:{port}/api/chat",
            json={"message": "C'est quoi un bon hook pour un reel ?"},
            timeout=30,
        )
        assert turn.status_code == 200, turn.text
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
