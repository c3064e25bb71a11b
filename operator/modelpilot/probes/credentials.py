"""Credentials from a mounted Secret, shared by every outbound client (Prometheus, model
registries): mounted rather than read through the API, so the operator needs no RBAC
on Secrets; read at every call, so a rotated Secret is picked up."""

from __future__ import annotations

import base64
from pathlib import Path


class CredentialsMissing(ValueError):
    """The directory holds no usable credentials; the message names the chart value."""


def auth_headers(directory: Path | None, chart_value: str) -> dict[str, str]:
    """A `token` file (bearer) wins, else `username` and `password` files (basic)."""
    if directory is None:
        return {}
    token = directory / "token"
    if token.is_file():
        return {"Authorization": f"Bearer {token.read_text().strip()}"}
    user, password = directory / "username", directory / "password"
    if user.is_file() and password.is_file():
        pair = f"{user.read_text().strip()}:{password.read_text().strip()}"
        return {"Authorization": f"Basic {base64.b64encode(pair.encode()).decode()}"}
    raise CredentialsMissing(
        f"{directory} holds neither a token nor username and password files: check the "
        f"Secret the chart's {chart_value} names"
    )
