"""axe-core in the test browser: the engine comes with the axe-playwright-python package (its
bundled axe.min.js), so nothing is fetched at run time."""

from __future__ import annotations

from typing import Any

BLOCKING = ("serious", "critical")


def axe_violations(page: Any, context: Any = None) -> list[dict[str, Any]]:
    """axe-core's violations of the page as it is now (open shadow roots included)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context=context)
    return results.response["violations"]


def blocking(violations: list[dict[str, Any]]) -> list[str]:
    """The serious and critical ones, one readable line each (rule, impact, where)."""
    lines = []
    for v in violations:
        if v.get("impact") in BLOCKING:
            targets = [" ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])][:4]
            summaries = [n.get("failureSummary", "")[:160] for n in v.get("nodes", [])][:1]
            lines.append(f"{v['id']} ({v['impact']}): {targets} {summaries}")
    return lines
