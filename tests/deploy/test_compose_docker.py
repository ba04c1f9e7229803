"""compose.yaml, the Dockerfile and deploy/setup.md agree with each other and with Settings
(Docker is not run here: its client alone is installed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from copines.config import Settings

ROOT = Path(__file__).resolve().parents[2]
NOT_SETTINGS = {"COPINES_WORKERS"}  # read by the image's command line, not by Settings


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def _setting_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"COPINES_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []) or []:
            names.add(str(choice).upper())
    return names


def test_the_services_and_their_order(compose: dict) -> None:
    services = compose["services"]
    assert {"db", "redis", "migrate", "app", "proxy"} <= set(services)
    assert "pgvector" in services["db"]["image"]
    assert services["redis"]["image"].startswith("redis:")
    assert services["migrate"]["command"] == ["copines", "migrate"]
    assert services["app"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["app"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in services["app"]  # only the proxy is reachable from outside
    # Settings written in .env beyond the listed ones (COPINES_N8N_ADDRESSES...) reach the app.
    assert services["app"]["env_file"] == services["migrate"]["env_file"] == ".env"
    assert set(services["proxy"]["ports"]) == {"80:80", "443:443"}
    for mount in services["proxy"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def test_every_variable_is_a_setting_and_no_secret_is_written(compose: dict) -> None:
    env = compose["services"]["app"]["environment"]
    known = _setting_names()
    for name, value in env.items():
        assert name in known or name in NOT_SETTINGS, f"{name} is not read by Settings"
        if any(word in name for word in ("KEY", "TOKEN", "PASSWORD")):
            assert str(value).startswith("${"), f"{name} must come from .env"
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert "@db:5432/" in env["DATABASE_URL"] and env["DATABASE_URL"].startswith("${DATABASE_URL")
    assert ":?" in env["COPINES_ADMIN_TOKEN"] and ":?" in env["COPINES_ALLOWED_ORIGINS"]
    assert env["COPINES_TRUST_FORWARDED_FOR"] == "true"  # behind the proxy
    example = (ROOT / "deploy" / "env.example").read_text(encoding="utf-8")
    for line in example.splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            if any(word in name for word in ("KEY", "TOKEN", "PASSWORD", "URL", "WEBHOOK")):
                assert value == "", f"env.example must not hold a value for {name}"


def test_the_dockerfile_builds_a_non_root_server() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.1[1-9]", text, re.M)
    assert re.search(r"^USER copines$", text, re.M)
    assert "EXPOSE 8000" in text and "/healthz" in text
    assert "copines serve --host 0.0.0.0 --port 8000 --workers" in text
    for source in re.findall(r"^COPY (?!--from)(?:--chown=\S+ )?(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY {path}: missing"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored and ".git" in ignored  # secrets and history stay out of the image


def test_the_guide_covers_each_step() -> None:
    guide = (ROOT / "deploy" / "setup.md").read_text(encoding="utf-8")
    for needle in (
        "create extension if not exists vector",
        "6543",
        "copines migrate",
        "OPENROUTER_API_KEY",
        "COHERE_API_KEY",
        "OPENAI_API_KEY",
        "REDIS_URL",
        "--workers",
        "copines ingest",
        "COPINES_ALLOWED_ORIGINS",
        "widget.js",
        "pg_dump",
        "pg_restore",
        "deploy/n8n/workflow.json",
    ):
        assert needle in guide, needle
