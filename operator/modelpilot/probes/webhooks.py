"""Calling users' webhooks: a JSON POST, bounded by the hook's timeout, only to hosts
the operator allows. The operator runs with cluster credentials inside the cluster's
network, so it must not call any address a model's author writes (SSRF): by default
only in-cluster Service names."""

from __future__ import annotations

import fnmatch
import urllib.parse
from typing import Any

import aiohttp

DEFAULT_WEBHOOK_ALLOW = ("*.svc", "*.svc.cluster.local")


def refusal(url: str, allow: tuple[str, ...]) -> str | None:
    """Why the URL may not be called, or None when it may."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"{url} is not an http(s) URL"
    if any(fnmatch.fnmatchcase(parsed.hostname, pattern) for pattern in allow):
        return None
    return (
        f"{parsed.hostname} is not allowed by the operator's --webhook-allow "
        f"({', '.join(allow) or 'nothing'})"
    )


async def call(
    session: aiohttp.ClientSession,
    name: str,
    url: str,
    payload: dict[str, Any],
    timeout: float,
    allow: tuple[str, ...],
) -> tuple[bool, str]:
    """(answered 2xx, what happened)."""
    why = refusal(url, allow)
    if why is not None:
        return False, f"webhook {name} refused: {why}"
    try:
        async with session.post(
            url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            await response.read()
            ok = 200 <= response.status < 300
            return ok, f"webhook {name} answered {response.status}"
    except (aiohttp.ClientError, TimeoutError) as err:
        return False, f"webhook {name} unreachable: {err or type(err).__name__}"
