"""Settings: the one reading of the environment, at start-up."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

OPENROUTER_URL = "https://openrouter.ai/api/v1"
OPENAI_URL = "https://api.openai.com/v1"
COHERE_URL = "https://api.cohere.com"
DRIVE_URL = "https://www.googleapis.com"
NOTION_URL = "https://api.notion.com"

# Dollars per million tokens (prompt, completion), used when the API reports no cost.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "anthropic/claude-3-haiku": (0.25, 1.25),
    "anthropic/claude-3.5-sonnet": (3.0, 15.0),
    "openai/gpt-4o-mini": (0.15, 0.60),
    "text-embedding-3-small": (0.02, 0.0),
}

MIN_SECRET_CHARS = 16  # the link secret and the IP hash key, when set

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "admin", "token", "xxx", "test"}


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything copines reads from the environment (or a `.env` file)."""

    model_config = SettingsConfigDict(
        env_prefix="COPINES_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # Storage
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    data_dir: Path = Path("data")
    sqlite_busy_timeout_ms: int = 5000
    # Postgres (pgvector): connection pool per process, and the vector search's trade-offs.
    pg_pool_min_size: int = 1
    pg_pool_max_size: int = 10
    pg_connect_timeout: float = 10.0
    # Per owner index: the lowest with recall@20 >= 0.98 at 100k chunks, with a little margin
    # (0.980 at 140, 0.983 at 160, 0.989 at 200; bench/postgres.py).
    pg_hnsw_ef_search: int = 160
    pg_exact_search_below: int = 3_000  # an expert's + shared chunks: fewer are searched exactly
    pg_hnsw_m: int = 16
    pg_hnsw_ef_construction: int = 64
    pg_maintenance_work_mem: str = "256MB"  # while building the HNSW index
    # Seconds a search or a write transaction may run, and wait for a lock, before it fails
    # with an error naming the setting (SET LOCAL, so poolers are fine); 0: no limit. Index
    # builds, and waits for another process's build, are exempt.
    pg_statement_timeout: float = 5.0
    pg_lock_timeout: float = 2.0

    # Chat models (OpenRouter or any OpenAI-compatible server)
    openrouter_api_key: SecretStr | None = Field(
        None, validation_alias=_env("OPENROUTER_API_KEY", "COPINES_LLM_API_KEY")
    )
    llm_base_url: str = OPENROUTER_URL
    http_referer: str = "https://lagencedescopines.com"
    app_title: str = "L'Agence des Copines - assistant"
    orchestrator_model: str = "anthropic/claude-3-haiku"
    fallback_model: str = "openai/gpt-4o-mini"
    expert_model: str | None = None  # overrides every expert file's model when set
    llm_connect_timeout: float = 5.0
    llm_read_timeout: float = 30.0
    orchestrator_timeout: float = 4.0
    llm_retries: int = 1
    # Deadlines of a streamed answer (seconds): the first piece of text (past it, the fallback
    # model takes over), the longest gap between two pieces, and the whole answer (fallback
    # included; also the /api/chat answer's).
    llm_first_token_timeout: float = Field(8.0, gt=0)
    # A whole (unstreamed, /api/chat) answer's response may only begin once it is written, so
    # its silent-model deadline is longer than a stream's first piece.
    llm_answer_start_timeout: float = Field(25.0, gt=0)
    llm_idle_timeout: float = Field(15.0, gt=0)
    turn_deadline: float = Field(45.0, gt=0)
    # While she waits, an SSE comment every this many seconds keeps proxies from closing.
    sse_keepalive_seconds: float = Field(5.0, gt=0)
    # How long an answer's write waits out a locked database before it is queued instead.
    save_retry_seconds: float = Field(30.0, ge=0)
    # On SIGTERM: how long running turns may still run (new ones get a 503).
    shutdown_grace: float = Field(20.0, ge=0)
    prices: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(DEFAULT_PRICES))

    # Embeddings
    embedder: Literal["auto", "local", "openai"] = "auto"
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    embeddings_base_url: str = OPENAI_URL
    embeddings_model: str = "text-embedding-3-small"
    embeddings_dimensions: int = 1536
    embeddings_batch_size: int = 64
    embeddings_timeout: float = 20.0
    local_embedder_threads: int = 2

    # Rerank
    cohere_api_key: SecretStr | None = Field(None, validation_alias=_env("COHERE_API_KEY"))
    cohere_base_url: str = COHERE_URL
    cohere_rerank_model: str = "rerank-multilingual-v3.0"
    rerank_timeout: float = 3.0
    rerank_price_per_1000: float = 2.0  # dollars per 1,000 searches (Cohere rerank v3)

    # Retrieval
    candidates: int = 20
    top_k: int = 3
    # Dense similarity floor; None means "the calibrated value for the embedder in use".
    match_threshold: float | None = None
    shared_patterns: Annotated[list[str], NoDecode] = ["agence", "faq", "glossaire", "shared"]
    experts_dir: Path | None = None  # extra expert files, beside the bundled ones

    # Conversation
    history_turns: int = 10
    max_message_chars: int = 2000
    max_answer_words: int = 300
    escalation_webhook: str | None = None
    # Email: replies of the team to visitors who left an address, and each new hand-off to the
    # team (smtp://user:password@host:port, or smtps:// for implicit TLS; starttls by default
    # on port 587, required with a password unless the host is this machine). Without it,
    # nothing is sent by email.
    smtp_url: SecretStr | None = None
    smtp_from: str = "L'Agence des Copines <bonjour@lagencedescopines.com>"
    smtp_timeout: float = 10.0
    smtp_attempts: int = Field(3, ge=1)  # a reply's email, while the server is down or busy
    smtp_retry_delay: float = 5.0  # seconds before the second attempt, doubled each time
    team_email: str | None = None  # who is told of each new hand-off
    console_url: str = "http://localhost:8000/admin"  # the console, as the team reaches it
    # Where a reply's link reopens the conversation: a page of the site that embeds the widget.
    site_url: str = "http://localhost:8000/"
    reply_link_days: int = 30  # how long that link opens the conversation
    # Privacy: the agency's policy (linked from the widget), how long conversations are kept
    # after their last message, how often `copines serve` purges older ones. The key of the
    # hash that replaces visitors' IP addresses and the secret that signs reply links: when
    # unset, generated on the first start and kept in the store (docs/privacy.md); at least
    # MIN_SECRET_CHARS characters when set. The previous link secret is still accepted while
    # the links it signed expire.
    privacy_url: str = "https://lagencedescopines.com/confidentialite"
    retention_days: int = 365
    purge_interval_hours: float = 24.0
    ip_hash_key: SecretStr | None = None
    link_secret: SecretStr | None = None
    link_secret_previous: SecretStr | None = None
    assistant_name: str = "Lou"  # signs the automatic messages (hand-offs), labelled "assistante"
    log_message_text: bool = False
    # Local router: the calibrated confidence from which it decides without the orchestrator
    # (None: the threshold picked on the dev part, shipped with the model; above 1: never).
    router_decide_alone: float | None = Field(None, ge=0.0, le=2.0)

    # Web
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    admin_token: SecretStr | None = None
    allowed_origins: Annotated[list[str], NoDecode] = [
        "http://localhost",
        "http://127.0.0.1",
        "http://localhost:8000",
        "http://127.0.0.1:8000",
    ]
    max_body_bytes: int = 16_384
    # The console's forms (sign-in, replies, notes...); the upload has upload_max_bytes.
    admin_max_body_bytes: int = Field(256 * 1024, gt=0)
    rate_per_minute: int = 10
    rate_per_day_ip: int = 100
    rate_new_conversations_per_hour: int = 6
    trust_forwarded_for: bool = False
    # Addresses whose X-Forwarded-For/-Proto uvicorn trusts (the proxy's; compose: the Caddy
    # network). Behind an HTTPS proxy this is what makes the console's cookie Secure.
    forwarded_allow_ips: str = "127.0.0.1"
    # The site's own origin (scheme://host[:port]) as visitors see it; the same-origin checks
    # compare with it, never with the request's Host header.
    public_origin: str | None = None
    max_header_bytes: int = Field(65_536, ge=4096)  # request line + headers (431 past it)
    http_protocol: Literal["httptools", "h11"] = "httptools"
    # Console sign-in: failed attempts an address may make before each further one waits
    # (the wait doubles with every failure, up to login_max_delay seconds).
    login_free_attempts: int = Field(3, ge=0)
    login_max_delay: float = Field(30.0, ge=0)
    # Console uploads: the request, each file, and what parsing may produce.
    upload_max_bytes: int = Field(20 * 1024 * 1024, gt=0)
    upload_max_files: int = Field(20, gt=0)
    # Text once decompressed (a docx's XML parts; its images may take four times as much).
    parse_max_expanded_bytes: int = Field(10 * 1024 * 1024, gt=0)
    parse_max_paragraphs: int = Field(20_000, gt=0)
    parse_max_pages: int = Field(500, gt=0)
    parse_timeout: float = Field(30.0, gt=0)  # seconds of parsing per file
    # Memory a parse may take in its child process (RLIMIT_AS beyond the child's start).
    parse_max_memory_bytes: int = Field(1024 * 1024 * 1024, gt=0)

    # Logging: JSON lines on stdout (`copines serve`, `copines ask`).
    log_level: str = "INFO"
    # Addresses (IPs or networks) of the n8n instances in front of the API: from them alone, the
    # visitor's address is read from the X-Copines-Visitor-IP header they forward.
    n8n_addresses: Annotated[list[str], NoDecode] = []
    rate_limit_prefix: str = "copines:rl:"  # Redis key prefix of the rate limits

    # Knowledge sources kept in sync: sites, Google Drive, Notion (docs/knowledge.md)
    sources_file: Path | None = None  # sources.yaml; default: <data_dir>/sources.yaml
    sync_interval_minutes: float = 0.0  # `copines serve` syncs every N minutes; 0: never
    fetch_user_agent: str = "copines-sync/0.1 (knowledge sync of L'Agence des Copines)"
    fetch_delay: float = 1.0  # seconds between two requests to one host (robots may ask more)
    fetch_timeout: float = 20.0  # one whole request, body included
    fetch_connect_timeout: float = 5.0
    fetch_max_bytes: int = 5_000_000  # a bigger answer is cut off and reported
    fetch_max_redirects: int = 5
    # Networks the address guard lets through although not public (e.g. "10.0.0.0/8" for an
    # intranet); loopback, private, link-local and metadata addresses are refused otherwise.
    fetch_allow_networks: Annotated[list[str], NoDecode] = []
    crawl_max_pages: int = 200
    google_service_account_file: Path | None = Field(
        None,
        validation_alias=_env(
            "COPINES_GOOGLE_SERVICE_ACCOUNT_FILE", "GOOGLE_APPLICATION_CREDENTIALS"
        ),
    )
    google_token_url: str | None = None  # default: the key file's token_uri
    drive_api_url: str = DRIVE_URL
    notion_token: SecretStr | None = Field(
        None, validation_alias=_env("COPINES_NOTION_TOKEN", "NOTION_TOKEN")
    )
    notion_api_url: str = NOTION_URL
    notion_version: str = "2022-06-28"

    @field_validator(
        "shared_patterns", "allowed_origins", "fetch_allow_networks", "n8n_addresses", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("ip_hash_key", "link_secret", "link_secret_previous", mode="before")
    @classmethod
    def _key(cls, value: object, info: ValidationInfo) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None  # empty means unset: the stored key is used, never an empty one
        if isinstance(raw, str) and len(raw) < MIN_SECRET_CHARS:
            name = f"COPINES_{(info.field_name or '').upper()}"
            raise ValueError(
                f"{name} is shorter than {MIN_SECRET_CHARS} characters: use a long random "
                "value (python -c 'import secrets; print(secrets.token_urlsafe(32))'), or unset it"
            )
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        scheme = value.get_secret_value().split("://", 1)[0]
        if scheme not in ("smtp", "smtps"):
            raise ValueError(
                "COPINES_SMTP_URL: use smtp://user:password@host:587 (STARTTLS, required with "
                "a password unless the host is this machine) or smtps://user:password@host:465"
            )
        return value

    @field_validator("n8n_addresses", "fetch_allow_networks")
    @classmethod
    def _networks(cls, value: list[str], info: ValidationInfo) -> list[str]:
        setting = f"COPINES_{(info.field_name or '').upper()}"
        for address in value:
            try:
                ipaddress.ip_network(address.strip(), strict=False)
            except ValueError as error:
                raise ValueError(
                    f"{setting}: {address!r} is not an IP address or network"
                ) from error
        return value

    @property
    def llm_enabled(self) -> bool:
        """True when a chat model can be called (a key, or a self-hosted base URL)."""
        return self.openrouter_api_key is not None or self.llm_base_url != OPENROUTER_URL

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, or a SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'copines.db').as_posix()}"

    @property
    def resolved_sources_file(self) -> Path:
        return self.sources_file or self.data_dir / "sources.yaml"

    @property
    def use_openai_embeddings(self) -> bool:
        if self.embedder == "openai":
            return True
        return self.embedder == "auto" and self.openai_api_key is not None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
