"""`copines serve`: the web service (API, widget, demo page, admin console)."""

from __future__ import annotations

import click


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
    @click.option("--log-level", default="info", show_default=True)
    def serve(host: str, port: int, workers: int, log_level: str) -> None:
        """Serve the chat API, the widget (/widget.js) and the demo page (/) over HTTP."""
        import uvicorn

        from copines.config import get_settings

        settings = get_settings()
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
            "copines.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            proxy_headers=settings.trust_forwarded_for,
            timeout_graceful_shutdown=20,
        )
