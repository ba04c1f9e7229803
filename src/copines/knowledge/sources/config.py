"""sources.yaml: which site, Drive folder or Notion database feeds which knowledge base.

sources:
  - name: blog
    sitemap: https://lagencedescopines.com/sitemap.xml
    prefix: https://lagencedescopines.com/blog/
  - name: guides-audrey
    drive_folder: 1AbCdEf...
    owner: audrey
  - name: notion-carole
    notion_database: 0f3c...
    owner: carole
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from copines.errors import ConfigError
from copines.knowledge.sources.http import FetchError, refuse_userinfo
from copines.store.base import SourceRecord

# The key naming a source's target, and the kind it makes.
KINDS = {
    "page": "page",
    "sitemap": "sitemap",
    "crawl": "crawl",
    "drive_folder": "drive",
    "notion_database": "notion_database",
    "notion_page": "notion_page",
    "notion_search": "notion_search",
}


class SourceEntry(BaseModel):
    """One entry of sources.yaml: a name, exactly one target, an owner, options."""

    model_config = {"extra": "forbid"}

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
    owner: str = "auto"
    page: str | None = None
    sitemap: str | None = None
    crawl: str | None = None
    drive_folder: str | None = None
    notion_database: str | None = None
    notion_page: str | None = None
    notion_search: str | None = None  # words to search for; "*" for every shared page
    prefix: str | None = None  # sitemap and crawl: only addresses starting with it
    max_pages: int | None = Field(None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _one_target(self) -> SourceEntry:
        given = [key for key in KINDS if getattr(self, key)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)} (got {len(given)})")
        if given[0] in ("page", "sitemap", "crawl"):
            try:
                refuse_userinfo(str(getattr(self, given[0])).strip())
            except FetchError as exc:
                raise ValueError(str(exc)) from None
        return self

    def record(self) -> SourceRecord:
        key = next(key for key in KINDS if getattr(self, key))
        options = {k: v for k in ("prefix", "max_pages") if (v := getattr(self, k)) is not None}
        return SourceRecord(
            name=self.name,
            kind=KINDS[key],
            target=str(getattr(self, key)).strip(),
            owner=self.owner,
            options=options,
            origin="file",
        )


def read_sources_file(path: Path, owners: list[str]) -> list[SourceRecord]:
    """The sources a sources.yaml names; an absent file names none.

    Raises:
        ConfigError: unreadable YAML, an unknown field or owner, a repeated name.
    """
    if not path.exists():
        return []
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"sources file {path}: cannot read it as YAML ({exc})") from exc
    entries = raw.get("sources") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"sources file {path}: expected a list under 'sources:'")
    records: list[SourceRecord] = []
    for number, entry in enumerate(entries, 1):
        try:
            record = SourceEntry.model_validate(entry).record()
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"sources file {path}, source {number}: {problems}") from exc
        if record.owner != "auto" and record.owner not in owners:
            raise ConfigError(
                f"sources file {path}, source '{record.name}': unknown owner "
                f"'{record.owner}'; choose one of: auto, {', '.join(owners)}"
            )
        if any(r.name == record.name for r in records):
            raise ConfigError(f"sources file {path}: the name '{record.name}' is used twice")
        records.append(record)
    return records
