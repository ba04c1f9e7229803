"""Experts are data: one YAML file each; Audrey and Carole ship here."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from copines.errors import ConfigError

BUNDLED_DIR = Path(__file__).parent
SHARED = "shared"
ESCALATE = "escalate"
RESERVED_IDS = {SHARED, ESCALATE, "auto", "offline", "team", "user", "assistant"}


class Expert(BaseModel):
    """One expert persona, as read from her file."""

    model_config = {"extra": "forbid", "frozen": True}

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")
    name: str = Field(min_length=1, max_length=40)
    title: str = Field(min_length=1, max_length=120)
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")
    initials: str = Field(min_length=1, max_length=3)
    model: str = Field(min_length=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    description: str = Field(min_length=20)
    expertise: list[str] = Field(min_length=1)
    persona: list[str] = Field(min_length=1)
    style_rules: list[str] = Field(min_length=1)
    filename_patterns: list[str] = Field(min_length=1)
    # Globs over a web page's address (its path, or the whole URL when the pattern names a
    # host): "/blog/instagram-*" tags that page as hers.
    url_patterns: list[str] = []
    tags: list[str] = []
    exemplars: list[str] = Field(min_length=5)

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_IDS:
            raise ValueError(f"'{value}' is reserved; choose another id")
        return value

    @field_validator("filename_patterns", "url_patterns")
    @classmethod
    def _lower_patterns(cls, value: list[str]) -> list[str]:
        return [p.strip().lower() for p in value if p.strip()]


def load_expert_file(path: Path) -> Expert:
    """Read and validate one expert file; errors name the file and the bad field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"expert file {path}: cannot read it as YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"expert file {path}: expected a mapping of fields at the top")
    try:
        expert = Expert.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '?'}': {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"expert file {path}: {problems}") from exc
    if expert.id != path.stem:
        raise ConfigError(
            f"expert file {path}: field 'id' is '{expert.id}' but the file is named "
            f"'{path.name}'; name the file {expert.id}.yaml"
        )
    return expert


def load_experts(extra_dir: Path | None = None) -> dict[str, Expert]:
    """The bundled experts plus those of `extra_dir` (a file there replaces a bundled one)."""
    files = {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.yaml"))}
    if extra_dir is not None:
        if not extra_dir.is_dir():
            raise ConfigError(f"COPINES_EXPERTS_DIR={extra_dir} is not a folder")
        files.update({p.stem: p for p in sorted(extra_dir.glob("*.yaml"))})
    experts = {stem: load_expert_file(path) for stem, path in sorted(files.items())}
    if not experts:
        raise ConfigError(
            "no expert file found; the bundled audrey.yaml and carole.yaml are missing"
        )
    return experts


def owner_choices(experts: dict[str, Expert]) -> list[str]:
    """Every valid document owner: each expert id, then 'shared'."""
    return [*experts, SHARED]
