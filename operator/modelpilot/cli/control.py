"""Commands against a cluster: `promote`, `abort`, `pause`, `resume`, `retry`,
`rollback`, `set-weight` (each writes the annotation the operator consumes) and
`status`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, cast

from modelpilot.cli.common import UsageProblem, guarded
from modelpilot.cli.status_view import render_status

COMMANDS = {
    "promote": "give the canary all traffic and make it stable",
    "abort": "put all traffic back on the stable version",
    "pause": "hold the canary at its weight",
    "resume": "continue a paused rollout",
    "retry": "start an aborted or failed rollout again from step 0",
    "rollback": "within the scale-down window, put all traffic back on the previous version",
}


def add_commands(commands: Any) -> None:
    for name, help_text in COMMANDS.items():
        parser = commands.add_parser(name, help=help_text, description=help_text)
        _target_arguments(parser)
        parser.set_defaults(handler=guarded(run_command), command_name=name)
    weight = commands.add_parser(
        "set-weight", help="hold the canary at a weight until the next command"
    )
    _target_arguments(weight)
    weight.add_argument("weight", type=int, help="canary percent, 0-100")
    weight.set_defaults(handler=guarded(run_command), command_name="set-weight")

    status = commands.add_parser("status", help="show a model's rollout")
    status.add_argument("name", help="ManagedModel name")
    status.add_argument("-n", "--namespace", default=None)
    status.add_argument("--kubeconfig")
    status.add_argument("-w", "--watch", action="store_true", help="refresh every 2 s")
    status.set_defaults(handler=guarded(run_status))


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="ManagedModel name")
    parser.add_argument(
        "--version", help="the version the command is meant for (default: from status)"
    )
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument("--kubeconfig")


def _client(args: argparse.Namespace) -> tuple[Any, str]:
    from kubernetes import config

    from modelpilot.k8s.client import api_client

    try:
        api = api_client(args.kubeconfig)
    except (config.ConfigException, OSError) as err:
        raise UsageProblem([f"cannot reach a cluster: {err}"]) from None
    namespace = args.namespace
    if namespace is None:
        try:
            # kubernetes' config helpers carry no annotations.
            _, context = config.list_kube_config_contexts(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
            namespace = (context or {}).get("context", {}).get("namespace") or "default"
        except (config.ConfigException, OSError):
            namespace = "default"
    return api, namespace


def _get_model(api: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes import client

    try:
        # kubernetes types custom objects as `object`; they are the JSON object, a dict.
        return cast(
            dict[str, Any],
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                "modelpilot.io", "v1alpha1", namespace, "managedmodels", name
            ),
        )
    except client.ApiException as err:
        if err.status == 404:
            raise UsageProblem([f"ManagedModel {namespace}/{name} not found"]) from None
        raise UsageProblem([f"cannot read ManagedModel {namespace}/{name}: {err.reason}"]) from None


def default_version(command: str, status: dict[str, Any]) -> str | None:
    if command == "rollback":
        return status.get("previousStableVersion")
    return status.get("canaryVersion")


def run_command(args: argparse.Namespace) -> int:
    from kubernetes import client

    api, namespace = _client(args)
    found = _get_model(api, namespace, args.name)
    status = found.get("status") or {}
    version = args.version or default_version(args.command_name, status)
    if not version:
        what = "previous stable version" if args.command_name == "rollback" else "canary"
        raise UsageProblem([f"{args.name} has no {what} now; name one with --version"])
    value = version
    if args.command_name == "set-weight":
        if not 0 <= args.weight <= 100:
            raise UsageProblem([f"weight {args.weight} is not within 0-100"])
        value = f"{version}={args.weight}"
    patch = {"metadata": {"annotations": {f"modelpilot.io/{args.command_name}": value}}}
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "modelpilot.io", "v1alpha1", namespace, "managedmodels", args.name, patch
    )
    print(f"managedmodel/{args.name} annotated modelpilot.io/{args.command_name}={value}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from kubernetes import client

    api, namespace = _client(args)
    core = client.CoreV1Api(api)
    while True:
        found = _get_model(api, namespace, args.name)
        events = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={args.name}"
        ).items
        text = render_status(found, [api.sanitize_for_serialization(e) for e in events])
        if not args.watch:
            sys.stdout.write(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text)
        sys.stdout.flush()
        try:
            time.sleep(2)
        except KeyboardInterrupt:
            return 0


__all__ = ["add_commands"]
