"""MLflow's webhooks (MLflow 3.3+) as a wake-up for registry-driven models: a signed
`model_version_alias` call makes the models following that alias poll the registry
now instead of at their next pollInterval. The call's body is never trusted for the
version: the poll that follows reads the alias, so polling stays the truth and a
forged or replayed call can at most cause one early poll.

MLflow signs `<delivery id>.<timestamp>.<body>` with HMAC-SHA256 under the webhook's
secret and sends `v1,<base64 digest>` in X-MLflow-Signature, the id and the Unix
timestamp in X-MLflow-Delivery-Id and X-MLflow-Timestamp. A call without a valid
signature, or signed more than MAX_SKEW seconds away from now, is refused (401) and
logged; the secret is read from its file at every call, so a rotated one is picked up.
A standby replica answers a signed call 503 with Retry-After (MLflow retries 503): only
the leader polls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

SIGNATURE = "X-MLflow-Signature"
TIMESTAMP = "X-MLflow-Timestamp"
DELIVERY_ID = "X-MLflow-Delivery-Id"
MAX_SKEW = 300.0  # seconds, as MLflow's documentation advises for replay protection
MAX_BODY = 64 * 1024
PATH = "/registry/mlflow"

Wake = Callable[[str, str], int]  # (registered model, alias) -> models woken


def refusal(secret: bytes, headers: Mapping[str, str], body: bytes, now: float) -> str | None:
    """Why the call is not MLflow's, signed with this secret, or None when it is."""
    signature, stamp, delivery = (headers.get(h) for h in (SIGNATURE, TIMESTAMP, DELIVERY_ID))
    if not signature or not stamp or not delivery:
        return f"unsigned: {SIGNATURE}, {TIMESTAMP} and {DELIVERY_ID} are required"
    try:
        skew = abs(now - int(stamp))
    except ValueError:
        return f"{TIMESTAMP} {stamp!r} is not a Unix time"
    if skew > MAX_SKEW:
        return f"signed {skew:.0f} s away from now (more than {MAX_SKEW:.0f}): a replay?"
    version, _, digest = signature.partition(",")
    if version != "v1":
        return f"signature version {version!r}: only v1 (HMAC-SHA256) is known"
    signed = delivery.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, digest):
        return "bad signature: not signed with the operator's webhook secret"
    return None


def alias_change(body: bytes) -> tuple[str, str] | None:
    """(registered model, alias) of an alias created or deleted; None for any other
    event (MLflow's webhook may subscribe to more)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("entity") != "model_version_alias":
        return None
    data = payload.get("data")
    if not isinstance(data, dict):
        return None
    name, alias = data.get("name"), data.get("alias")
    if isinstance(name, str) and isinstance(alias, str):
        return name, alias
    return None


def receiver(
    secret_file: Path,
    wake: Wake,
    clock: Callable[[], float],
    leading: Callable[[], bool] = lambda: True,
) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            secret = secret_file.read_bytes().strip()
        except OSError as err:
            log.error("registry webhook refused: its secret cannot be read (%s)", err)
            return web.Response(status=503, text="the webhook secret cannot be read\n")
        why = refusal(secret, request.headers, body, clock()) if secret else "no secret set"
        if why is not None:
            log.warning("registry webhook from %s refused: %s", request.remote, why)
            return web.Response(status=401, text=f"refused: {why}\n")
        if not leading():
            return web.Response(
                status=503, headers={"Retry-After": "1"}, text="a standby: the leader polls\n"
            )
        change = alias_change(body)
        if change is None:
            return web.Response(status=202, text="not an alias event: nothing to do\n")
        woken = wake(*change)
        log.info("registry webhook: %s@%s moved; %d model(s) poll now", *change, woken)
        return web.json_response({"woken": woken}, status=202)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(PATH, handle)
    return app


async def serve_receiver(
    secret_file: Path,
    wake: Wake,
    clock: Callable[[], float],
    port: int,
    host: str = "0.0.0.0",
    leading: Callable[[], bool] = lambda: True,
) -> web.AppRunner:
    runner = web.AppRunner(receiver(secret_file, wake, clock, leading), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
