"""`modelpilot run`: the operator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

from modelpilot.api.gateways import GATEWAY_FLAVORS
from modelpilot.probes.webhooks import DEFAULT_WEBHOOK_ALLOW


def add_commands(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run the operator",
        description="Run the modelpilot operator against the current cluster (in-cluster "
        "credentials, else the kubeconfig). Replicas elect a leader on a Lease: one writes, "
        "the others watch and take over when it stops renewing.",
    )
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable); default: all namespaces",
    )
    run.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    run.add_argument(
        "--no-route-gate",
        action="store_true",
        help="do not wait for the gateway to accept the HTTPRoute between steps (for "
        "clusters without a Gateway API controller)",
    )
    run.add_argument(
        "--kserve-legacy-raw-deployment",
        action="store_true",
        help="write KServe's old deploymentMode names (RawDeployment for Standard, "
        "Serverless for Knative), as KServe older than 0.16 needs",
    )
    run.add_argument(
        "--gateway-flavor",
        choices=GATEWAY_FLAVORS,
        default="generic",
        help="the Gateway API implementation routes go through; it decides which "
        "HTTPRoute features are rendered and which metrics the analysis queries "
        "(default: generic, core features only)",
    )
    run.add_argument(
        "--drain-delay",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long a version due to stop keeps its pods after the gateway accepted a "
        "route sending it nothing: a gateway's data plane switches after it reports the "
        "route accepted (default 5; raise it for load balancers that deregister slowly)",
    )
    run.add_argument(
        "--max-concurrent-rollouts",
        type=int,
        default=0,
        metavar="N",
        help="at most N rollouts in flight at once across the models this operator "
        "manages; the others wait in line (status.queuedSince, condition Progressing "
        "reason Queued) so a fleet-wide change cannot take every GPU at once (default 0: "
        "no limit)",
    )
    run.add_argument(
        "--shards",
        type=int,
        default=1,
        metavar="N",
        help="split the models among N operator processes by a stable hash of "
        "namespace/name; each shard elects its own leader on the Lease <lease-name>-shard-<i> "
        "(default 1: one process owns every model)",
    )
    run.add_argument(
        "--shard",
        type=int,
        default=0,
        metavar="I",
        help="the shard this process owns, 0 <= I < --shards (default 0)",
    )
    run.add_argument(
        "--mirror-settle",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="traefik: how long a shadow's TraefikService exists before a route names it, "
        "and stays after a route without it was accepted; keep it above Traefik's "
        "providersThrottleDuration (default 3, Traefik's throttle defaults to 2 s)",
    )
    run.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="Prometheus for canary analysis, when a model names none "
        "(spec.rollout.analysis.prometheus.address), e.g. http://prometheus.monitoring:9090",
    )
    run.add_argument(
        "--prometheus-auth-dir",
        metavar="DIR",
        help="credentials for --prometheus-url, read at every check: a `token` file "
        "(bearer), or `username` and `password` files (basic); the chart mounts "
        "prometheusAuth.secretName here",
    )
    run.add_argument(
        "--registry-auth-dir",
        metavar="DIR",
        help="credentials for the model registries (spec.registry), read at every poll: "
        "a `token` file (bearer), or `username` and `password` files (basic); the chart "
        "mounts registryAuth.secretName here",
    )
    run.add_argument(
        "--registry-webhook-port",
        type=int,
        metavar="PORT",
        help="serve POST /registry/mlflow here for MLflow's model_version_alias webhooks, "
        "signed with the key in --registry-webhook-secret-file: a signed call makes the "
        "models following that alias poll now (polling stays the truth); off by default",
    )
    run.add_argument(
        "--registry-webhook-secret-file",
        metavar="FILE",
        help="the webhook's HMAC secret (as given to MLflow's create_webhook), read at every "
        "call; the chart mounts registryWebhook.secretName here",
    )
    run.add_argument(
        "--webhook-allow",
        action="append",
        metavar="HOST_PATTERN",
        help="hosts webhooks may call, as shell patterns (repeatable); default: the "
        f"cluster's Service names ({', '.join(DEFAULT_WEBHOOK_ALLOW)})",
    )
    election = run.add_argument_group("leader election")
    election.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="elect one active replica on a coordination.k8s.io Lease (default: on); off "
        "only when exactly one replica runs",
    )
    election.add_argument("--lease-name", default="modelpilot", help="default: modelpilot")
    election.add_argument(
        "--lease-namespace",
        help="default: $POD_NAMESPACE, else the pod's service account namespace, else default",
    )
    election.add_argument(
        "--identity",
        help="this replica's name in the Lease, its Events and its User-Agent "
        "(default: $POD_NAME, else <hostname>-<pid>)",
    )
    election.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="a standby takes a Lease not renewed for this long (default 15)",
    )
    election.add_argument(
        "--renew-deadline",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the leader stops writing this long after its last renewal; below "
        "--lease-duration (default 10)",
    )
    election.add_argument(
        "--retry-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often the leader renews and a standby tries (default 2)",
    )
    run.add_argument("--liveness-port", type=int, default=8080, help="serves /healthz")
    run.add_argument("--metrics-port", type=int, default=8081, help="serves /metrics")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(handler=run_operator_command)


def run_operator_command(args: argparse.Namespace) -> int:
    # Imported here: `modelpilot render` should not pay for kopf and the client.
    from modelpilot.handlers.manage import Settings
    from modelpilot.handlers.runner import run_operator
    from modelpilot.k8s.client import Kube, api_client

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf logs every handler call at INFO: one line per child event.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from modelpilot import __version__
    from modelpilot.k8s.leader import Election, LeaseTiming

    identity = (
        args.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    )
    if args.shards < 1 or not 0 <= args.shard < args.shards:
        raise SystemExit(
            f"modelpilot run: --shard {args.shard} of --shards {args.shards}: need "
            "--shards >= 1 and 0 <= --shard < --shards"
        )
    if args.max_concurrent_rollouts < 0:
        raise SystemExit("modelpilot run: --max-concurrent-rollouts must be 0 (no limit) or more")
    if (args.registry_webhook_port is None) != (args.registry_webhook_secret_file is None):
        raise SystemExit(
            "modelpilot run: --registry-webhook-port and --registry-webhook-secret-file go "
            "together: an unsigned webhook is never accepted"
        )
    election = None
    if args.leader_elect:
        try:
            timing = LeaseTiming(args.lease_duration, args.renew_deadline, args.retry_period)
        except ValueError as err:
            raise SystemExit(
                f"modelpilot run: {err} (--retry-period, --renew-deadline, --lease-duration)"
            ) from None
        lease = args.lease_name if args.shards == 1 else f"{args.lease_name}-shard-{args.shard}"
        election = Election(identity, lease, _lease_namespace(args.lease_namespace), timing)
    kube = Kube(api_client(args.kubeconfig, user_agent=f"modelpilot/{__version__} ({identity})"))
    settings = Settings(
        route_gate=not args.no_route_gate,
        legacy_raw_deployment=args.kserve_legacy_raw_deployment,
        gateway_flavor=args.gateway_flavor,
        mirror_settle=args.mirror_settle,
        drain_delay=args.drain_delay,
        max_concurrent_rollouts=args.max_concurrent_rollouts or None,
        shards=args.shards,
        shard=args.shard,
        prometheus_url=args.prometheus_url,
        webhook_allow=tuple(args.webhook_allow or DEFAULT_WEBHOOK_ALLOW),
        prometheus_auth=Path(args.prometheus_auth_dir) if args.prometheus_auth_dir else None,
        registry_auth=Path(args.registry_auth_dir) if args.registry_auth_dir else None,
        registry_webhook_port=args.registry_webhook_port,
        registry_webhook_secret=(
            Path(args.registry_webhook_secret_file) if args.registry_webhook_secret_file else None
        ),
    )
    asyncio.run(
        run_operator(
            kube,
            settings,
            namespaces=args.namespace,
            liveness=f"http://0.0.0.0:{args.liveness_port}/healthz",
            metrics_port=args.metrics_port,
            election=election,
        )
    )
    return 0


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _lease_namespace(flag: str | None) -> str:
    if flag:
        return flag
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"
