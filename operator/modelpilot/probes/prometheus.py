"""A minimal Prometheus HTTP API client: one instant query, one number back."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import aiohttp

from modelpilot.probes import credentials


class PrometheusError(Exception):
    """The query did not give a usable answer; the message says why, for status."""


def auth_headers(directory: Path | None) -> dict[str, str]:
    """Credentials for --prometheus-auth-dir (see probes.credentials)."""
    try:
        return credentials.auth_headers(directory, "prometheusAuth.secretName")
    except credentials.CredentialsMissing as err:
        raise PrometheusError(str(err)) from None


class Prometheus:
    def __init__(
        self,
        address: str,
        session: aiohttp.ClientSession,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ):
        self.address = address.rstrip("/")
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.headers = headers or {}

    async def number(self, query: str, at: float) -> float | None:
        """The query's single value at `at` (unix seconds); None when it returns no
        series or NaN. More than one series is an error: the query must aggregate."""
        url = f"{self.address}/api/v1/query"
        try:
            async with self.session.get(
                url,
                params={"query": query, "time": f"{at:.3f}"},
                timeout=self.timeout,
                headers=self.headers,
            ) as response:
                body: dict[str, Any] = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise PrometheusError(
                f"Prometheus at {self.address} unreachable: {err or type(err).__name__}"
            ) from None
        if response.status in (401, 403):
            raise PrometheusError(
                f"Prometheus at {self.address} refused the operator's credentials "
                f"({response.status})"
            )
        if body.get("status") != "success":
            raise PrometheusError(
                f"Prometheus refused the query: {body.get('errorType', '')}: "
                f"{body.get('error', body)}"
            )
        data = body.get("data") or {}
        result = data.get("result")
        if data.get("resultType") == "scalar":
            return _value(result)
        if data.get("resultType") != "vector":
            raise PrometheusError(f"the query returns a {data.get('resultType')}, not a number")
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(
                f"the query returns {len(result)} series; aggregate it to one, e.g. sum(...)"
            )
        return _value(result[0].get("value"))


def _value(sample: Any) -> float | None:
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError) as err:
        raise PrometheusError(f"not a sample: {sample!r}") from err
    return None if math.isnan(value) else value
