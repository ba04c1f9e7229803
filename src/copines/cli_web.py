"""`copines serve`: the web service (API, widget, demo page, admin console)."""

from __future__ import annotations

import click

LIMITED_HTTP = "copines.api.http_limits:LimitedHttpToolsProtocol"


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
    @click.option("--port", default=8000, show_default=True, type=int)
    @click.option(
        "--workers",
        default=1,
        show_default=True,
        type=click.IntRange(1, 64),
        help="processes; with more than one, set REDIS_URL so rate limits are shared",
    )
    @click.option(
        "--log-level", default=None, help="debug, info, warning... (default: COPINES_LOG_LEVEL)"
    )
    def serve(host: str, port: int, workers: int, log_level: str | None) -> None:
        """Serve the chat API, the widget (/widget.js) and the demo page (/) over HTTP."""
        import uvicorn

        from copines.config import get_settings
        from copines.logs import setup_logging

        settings = get_settings()
        log_level = (log_level or settings.log_level).lower()
        setup_logging(log_level, settings)
        from copines.admin.auth import check_admin_token
        from copines.errors import ConfigError

        try:
            check_admin_token(settings, host)  # the console needs a strong token off loopback
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        if workers > 1 and not settings.redis_url:
            click.echo(
                "warning: several workers without REDIS_URL: each worker counts rate limits "
                "on its own; set REDIS_URL to share them",
                err=True,
            )
        click.echo(f"copines: http://{host}:{port}/ (API docs at /docs)", err=True)
        uvicorn.run(
            "copines.api.app:create_served_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            proxy_headers=settings.trust_forwarded_for,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            # Running turns get `shutdown_grace` on SIGTERM, then store what they showed:
            # uvicorn waits a little longer so that their last events get out.
            timeout_graceful_shutdown=settings.shutdown_grace + 5,
            # A request's head is bounded: httptools through our protocol (uvicorn bounds it
            # only for h11), h11 by its own setting when chosen.
            http=LIMITED_HTTP if settings.http_protocol == "httptools" else "h11",
            h11_max_incomplete_event_size=settings.max_header_bytes,
            log_config=None,  # copines.logs configures the JSON lines, uvicorn's included
        )
