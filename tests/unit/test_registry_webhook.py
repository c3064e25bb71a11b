"""MLflow's webhook calls: signature, replay window, the events that wake models, and the
receiver answering over a real socket. Signatures are made by MLflow's own signing
function (the mlflow package is a test dependency), so a change in its format fails
here."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from modelpilot.handlers.registry_webhook import (
    DELIVERY_ID,
    PATH,
    SIGNATURE,
    TIMESTAMP,
    alias_change,
    refusal,
    serve_receiver,
)
from modelpilot_dev.procs import free_port

SECRET = "s3cret-key"
NOW = 1_800_000_000.0


def alias_event(name: str = "iris", alias: str = "champion") -> bytes:
    payload = {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2027-01-15T08:00:00+00:00",
        "data": {"name": name, "alias": alias, "version": "2"},
    }
    return json.dumps(payload).encode()


def signed(body: bytes, *, secret: str = SECRET, at: float = NOW) -> dict[str, str]:
    delivery, stamp = str(uuid.uuid4()), str(int(at))
    signature = _generate_hmac_signature(secret, delivery, stamp, body.decode())
    return {SIGNATURE: signature, TIMESTAMP: stamp, DELIVERY_ID: delivery}


def test_a_call_signed_by_mlflow_with_the_secret_is_accepted() -> None:
    body = alias_event()
    assert refusal(SECRET.encode(), signed(body), body, NOW + 5) is None
    assert alias_change(body) == ("iris", "champion")


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "unsigned"),
        (signed(alias_event(), secret="another"), "bad signature"),
        (signed(alias_event(), at=NOW - 3600), "a replay?"),
        ({**signed(alias_event()), SIGNATURE: "v2,abc"}, "only v1"),
        ({**signed(alias_event()), TIMESTAMP: "yesterday"}, "not a Unix time"),
    ],
)
def test_a_call_not_signed_with_the_secret_is_refused(headers: dict[str, str], why: str) -> None:
    found = refusal(SECRET.encode(), headers, alias_event(), NOW)
    assert found is not None and why in found


def test_a_body_changed_after_signing_is_refused() -> None:
    headers = signed(alias_event("iris"))
    found = refusal(SECRET.encode(), headers, alias_event("fraud"), NOW)
    assert found is not None and "bad signature" in found


def test_only_alias_events_name_a_model() -> None:
    other = {"entity": "model_version", "action": "created", "data": {"name": "iris"}}
    assert alias_change(json.dumps(other).encode()) is None
    assert alias_change(b"not json") is None
    assert alias_change(b'{"entity": "model_version_alias", "data": []}') is None


def test_the_receiver_wakes_followers_only_for_a_signed_call(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    woken: list[tuple[str, str]] = []

    def wake(model: str, alias: str) -> int:
        woken.append((model, alias))
        return 1

    async def exchange() -> list[tuple[int, str]]:
        port = free_port()
        leader = [True]
        runner = await serve_receiver(
            secret_file, wake, time.time, port, host="127.0.0.1", leading=lambda: leader[0]
        )
        try:
            body = alias_event()
            calls = [signed(body, at=time.time()), signed(body, secret="x", at=time.time()), {}]
            answers = []
            for headers in calls:
                answers.append(await asyncio.to_thread(post, port, body, headers))
            leader[0] = False  # a standby: MLflow retries, and reaches the leader
            answers.append(await asyncio.to_thread(post, port, body, signed(body, at=time.time())))
            return answers
        finally:
            await runner.cleanup()

    answers = asyncio.run(exchange())
    assert [status for status, _ in answers] == [202, 401, 401, 503]
    assert json.loads(answers[0][1]) == {"woken": 1}
    assert "bad signature" in answers[1][1] and "unsigned" in answers[2][1]
    assert woken == [("iris", "champion")]


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_a_webhook_wakes_exactly_the_models_following_that_alias() -> None:
    from modelpilot.handlers.wiring import followers, registry_source

    assert registry_source({"registry": {"mlflow": {"model": "iris"}}}) == ("iris", "champion")
    assert registry_source({"registry": {"mlflow": {"model": "iris", "alias": "beta"}}}) == (
        "iris",
        "beta",
    )
    assert registry_source({"versions": []}) is None
    assert registry_source({"registry": {"mlflow": {"model": 7}}}) is None  # invalid: nothing

    sources = {
        ("a", "iris"): ("iris", "champion"),
        ("b", "iris"): ("iris", "champion"),
        ("a", "iris-beta"): ("iris", "beta"),
    }
    assert followers(sources, "iris", "champion") == [("a", "iris"), ("b", "iris")]
    assert followers(sources, "fraud", "champion") == []
