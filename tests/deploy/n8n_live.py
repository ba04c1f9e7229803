"""A real n8n, installed from the npm registry by deploy/n8n/install.sh into a cache folder
outside the repository, serving deploy/n8n/workflow.json in front of a real copines server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "deploy" / "n8n" / "workflow.json"
RENDER = ROOT / "deploy" / "n8n" / "render.py"
WORKFLOW_ID = "copinesWidgetChat"
WEBHOOK_PATH = "/webhook/copines-chat"


def n8n_binary() -> Path | None:
    """deploy/n8n/install.sh's n8n (COPINES_N8N_DIR or ~/.cache/copines-n8n), if installed."""
    folder = Path(os.environ.get("COPINES_N8N_DIR") or Path.home() / ".cache" / "copines-n8n")
    binary = folder / "node_modules" / ".bin" / "n8n"
    return binary if binary.exists() else None


def require_n8n() -> Path:
    """The n8n binary; a skip where it is missing, a failure under CI (which installs it)."""
    binary = n8n_binary()
    if binary is None or shutil.which("node") is None:
        reason = "n8n is not installed: run deploy/n8n/install.sh (Node.js and npm needed)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class N8n:
    """One n8n process on a loopback port with its own user folder; stopped by its PID."""

    def __init__(self, binary: Path, folder: Path, env: dict[str, str]):
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(folder),
            "N8N_USER_FOLDER": str(folder),
            "N8N_PORT": str(self.port),
            "N8N_RUNNERS_BROKER_PORT": str(free_port()),
            "N8N_LISTEN_ADDRESS": "127.0.0.1",
            "N8N_HOST": "127.0.0.1",
            "N8N_PROTOCOL": "http",
            "N8N_ENCRYPTION_KEY": "tests-only-encryption-key",
            "N8N_DIAGNOSTICS_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            "N8N_TEMPLATES_ENABLED": "false",
            "N8N_PERSONALIZATION_ENABLED": "false",
            "N8N_SECURE_COOKIE": "false",
            "N8N_RUNNERS_ENABLED": "false",
            "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false",
            "DB_TYPE": "sqlite",
            "EXECUTIONS_DATA_SAVE_ON_SUCCESS": "none",
            **env,
        }
        self.log = folder / "n8n.log"
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"n8n {args[0]} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def import_workflow(self, origins: str) -> None:
        rendered = subprocess.run(
            [sys.executable, str(RENDER), "--origins", origins],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        workflow = json.loads(rendered)
        workflow["id"] = WORKFLOW_ID
        path = self.folder / "workflow.json"
        path.write_text(json.dumps(workflow), encoding="utf-8")
        self.cli("import:workflow", f"--input={path}")
        self.cli("publish:workflow", f"--id={WORKFLOW_ID}")

    def start(self, timeout: float = 240) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "start"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"n8n stopped while starting:\n{self.log.read_text()[-3000:]}")
            try:
                # A GET names the method the webhook is registered for ("Did you mean to make a
                # POST request?") once the workflow is live, without running it.
                probe = httpx.get(f"{self.url}{WEBHOOK_PATH}", timeout=2)
                if probe.status_code == 404 and "POST" in probe.text:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"n8n did not serve the webhook in {timeout} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
