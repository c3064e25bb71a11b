"""MLflow's model registry over its REST API (stdlib HTTP: the `mlflow` package is heavy
and never enters the operator; the tests run a real MLflow server with it).

Two calls: which version an alias names, and where that version's artifacts can be
downloaded from (`model-versions/get-download-uri`). Never `ModelVersion.source`: in
MLflow 3 it is `models:/m-<id>`, which nothing outside MLflow can download.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from modelpilot.probes import credentials

API = "/api/2.0/mlflow"
# Schemes only MLflow understands, or that point into the registry's own disk: KServe's
# storage initializer (s3, gs, hdfs, webhdfs, hf, http(s), azure, pvc, oci) cannot fetch them.
UNDOWNLOADABLE = ("mlflow-artifacts", "runs", "models", "file", "dbfs")


class RegistryError(Exception):
    """The registry gave no usable answer; the message says why, for status."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AliasNotFound(RegistryError):
    """The registered model, or its alias, does not exist."""


def undownloadable_scheme(uri: str) -> str | None:
    """The scheme of a URI KServe cannot download (a bare path counts as `file`)."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if not scheme:
        return "a local path"
    return f"{scheme}:" if scheme in UNDOWNLOADABLE else None


class MlflowRegistry:
    def __init__(
        self, tracking_uri: str, *, timeout: float = 5.0, auth_dir: Path | None = None
    ) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self.timeout, self.auth_dir = timeout, auth_dir

    def alias_version(self, model: str, alias: str) -> int:
        found = self._get("registered-models/alias", name=model, alias=alias)
        try:
            return int(found["model_version"]["version"])
        except (KeyError, TypeError, ValueError):
            raise RegistryError(
                f"{self.tracking_uri} answered the alias {alias!r} of {model!r} without a "
                "version number"
            ) from None

    def download_uri(self, model: str, version: int) -> str:
        found = self._get("model-versions/get-download-uri", name=model, version=str(version))
        uri = found.get("artifact_uri")
        if not isinstance(uri, str) or not uri:
            raise RegistryError(
                f"{self.tracking_uri} gave no download URI for {model!r} version {version}"
            )
        return uri

    def _get(self, path: str, **query: str) -> dict[str, Any]:
        url = f"{self.tracking_uri}{API}/{path}?{urllib.parse.urlencode(query)}"
        try:
            headers = credentials.auth_headers(self.auth_dir, "registryAuth.secretName")
        except credentials.CredentialsMissing as err:
            raise RegistryError(str(err)) from None
        request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            raise self._refused(err, query) from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise RegistryError(f"cannot reach {self.tracking_uri}: {reason}") from None
        try:
            parsed = json.loads(body)
        except ValueError:
            raise RegistryError(f"{self.tracking_uri} did not answer JSON on {path}") from None
        if not isinstance(parsed, dict):
            raise RegistryError(f"{self.tracking_uri} did not answer an object on {path}")
        return parsed

    def _refused(self, err: urllib.error.HTTPError, query: dict[str, str]) -> RegistryError:
        try:
            detail = json.loads(err.read() or b"{}")
        except ValueError:
            detail = {}
        code = detail.get("error_code") if isinstance(detail, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else None
        # MLflow 3.17 answers a missing model 404 RESOURCE_DOES_NOT_EXIST, but a missing
        # alias 400 INVALID_PARAMETER_VALUE "Registered model alias X not found."
        missing_alias = code == "INVALID_PARAMETER_VALUE" and "not found" in str(message)
        if err.code == 404 or code == "RESOURCE_DOES_NOT_EXIST" or missing_alias:
            what = f"alias {query['alias']!r}" if "alias" in query else "version"
            return AliasNotFound(
                f"{self.tracking_uri} knows no {what} of registered model {query['name']!r}"
            )
        if err.code in (401, 403):
            return RegistryError(
                f"{self.tracking_uri} refused the operator's credentials ({err.code}): check "
                "the Secret the chart's registryAuth.secretName names"
            )
        return RegistryError(f"{self.tracking_uri} answered {err.code}: {message or err.reason}")
