"""The MLflow REST client against a small local HTTP server that answers as MLflow's
does (shapes read from a real MLflow 3.17.2 server; tests/cluster/test_registry.py
runs one): requests, credentials,
and every failure turned into one line for status."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from modelpilot.probes.mlflow import (
    AliasNotFound,
    MlflowRegistry,
    RegistryError,
    undownloadable_scheme,
)


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("s3://models/iris/2", None),
        ("gs://b/iris", None),
        ("hf://org/model", None),
        ("https://host/artifacts/model.joblib", None),
        ("pvc://claim/iris", None),
        ("mlflow-artifacts:/1/abc/artifacts", "mlflow-artifacts:"),
        ("models:/m-0123", "models:"),
        ("runs:/abc/model", "runs:"),
        ("file:///tmp/mlruns/1/model", "file:"),
        ("/tmp/mlruns/1/model", "a local path"),
        ("dbfs:/databricks/mlflow", "dbfs:"),
    ],
)
def test_what_kserve_cannot_download(uri: str, scheme: str | None) -> None:
    assert undownloadable_scheme(uri) == scheme


class Answers:
    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {}
        self.seen: list[tuple[str, dict[str, list[str]], str | None]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Answers]]:
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            answers.seen.append((url.path, parse_qs(url.query), self.headers["Authorization"]))
            body = answers.body if isinstance(answers.body, bytes) else json.dumps(answers.body)
            data = body if isinstance(body, bytes) else body.encode()
            self.send_response(answers.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", answers
    httpd.shutdown()


def test_an_alias_is_read_as_a_version_number(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.body = {"model_version": {"name": "iris", "version": "7", "aliases": ["champion"]}}
    assert MlflowRegistry(url).alias_version("iris", "champion") == 7
    path, query, auth = answers.seen[-1]
    assert path == "/api/2.0/mlflow/registered-models/alias"
    assert query == {"name": ["iris"], "alias": ["champion"]} and auth is None


def test_the_download_uri_is_asked_for_by_version(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.body = {"artifact_uri": "s3://models/iris/7"}
    assert MlflowRegistry(url).download_uri("iris", 7) == "s3://models/iris/7"
    assert answers.seen[-1][:2] == (
        "/api/2.0/mlflow/model-versions/get-download-uri",
        {"name": ["iris"], "version": ["7"]},
    )


def test_a_missing_alias_or_model_is_its_own_error(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.status = 400  # what MLflow 3.17 answers for an alias that does not exist
    answers.body = {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Registered model alias champion not found.",
    }
    with pytest.raises(AliasNotFound, match="no alias 'champion' of registered model 'iris'"):
        MlflowRegistry(url).alias_version("iris", "champion")
    answers.status = 404
    answers.body = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no model"}
    with pytest.raises(AliasNotFound):
        MlflowRegistry(url).alias_version("iris", "champion")
    answers.status = 400
    answers.body = {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad name"}
    with pytest.raises(RegistryError, match="answered 400: bad name") as other:
        MlflowRegistry(url).alias_version("iris", "champion")
    assert not isinstance(other.value, AliasNotFound)


def test_credentials_are_sent_and_never_shown(server: tuple[str, Answers], tmp_path: Path) -> None:
    url, answers = server
    (tmp_path / "token").write_text("s3cr3t\n")
    answers.status = 403
    answers.body = {"error_code": "PERMISSION_DENIED"}
    with pytest.raises(RegistryError) as refused:
        MlflowRegistry(url, auth_dir=tmp_path).alias_version("iris", "champion")
    assert answers.seen[-1][2] == "Bearer s3cr3t"
    assert "registryAuth.secretName" in refused.value.message
    assert "s3cr3t" not in refused.value.message


def test_garbage_and_silence_are_registry_errors(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.body = b"<html>proxy error</html>"
    with pytest.raises(RegistryError, match="did not answer JSON"):
        MlflowRegistry(url).alias_version("iris", "champion")
    answers.status, answers.body = 503, {"message": "overloaded"}
    with pytest.raises(RegistryError, match="answered 503: overloaded"):
        MlflowRegistry(url).alias_version("iris", "champion")
    with pytest.raises(RegistryError, match=re.escape("cannot reach http://127.0.0.1:9")):
        MlflowRegistry("http://127.0.0.1:9", timeout=1).alias_version("iris", "champion")
