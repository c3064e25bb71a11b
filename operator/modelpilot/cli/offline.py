"""Commands that need no cluster: render, validate, crd."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from modelpilot.api import InvalidManagedModel, ManagedModel, parse_managed_model
from modelpilot.api.crd import crd_yaml
from modelpilot.api.gateways import GATEWAY_FLAVORS
from modelpilot.cli.common import UsageProblem, guarded
from modelpilot.render import (
    RenderError,
    UnservableModel,
    default_render_state,
    parse_weights,
    render_model,
)
from modelpilot.runtimes import default_runtimes


def add_commands(commands: Any) -> None:
    render = commands.add_parser(
        "render",
        help="print the manifests modelpilot would create (like `helm template`)",
        description="Print the InferenceServices, HPAs and HTTPRoute for a ManagedModel as "
        "multi-document YAML, resolved against KServe's default ClusterServingRuntimes. "
        "Warnings go to stderr.",
    )
    _file_argument(render)
    render.add_argument(
        "--weights",
        metavar="V=PCT,...",
        help="traffic split to render, e.g. v1=90,v2=10 (default: the target gets 100)",
    )
    render.add_argument("-n", "--namespace", help="namespace for objects that name none")
    render.add_argument(
        "--kserve-legacy-raw-deployment",
        action="store_true",
        help="write KServe's old deploymentMode names (RawDeployment for Standard, "
        "Serverless for Knative), as KServe older than 0.16 needs",
    )
    render.add_argument(
        "--gateway-flavor",
        choices=GATEWAY_FLAVORS,
        default="generic",
        help="render the route as the operator run with this flavor does",
    )
    render.set_defaults(handler=guarded(run_render))

    validate = commands.add_parser(
        "validate",
        help="check a ManagedModel file",
        description="Check ManagedModel "
        "documents against the same rules the CRD enforces; exit 2 with one line per problem.",
    )
    _file_argument(validate)
    validate.set_defaults(handler=guarded(run_validate))

    crd = commands.add_parser("crd", help="print the ManagedModel CRD")
    crd.set_defaults(handler=lambda _args: _print(crd_yaml()))


def _file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="ManagedModel YAML ('-': stdin)"
    )


def _print(text: str) -> int:
    sys.stdout.write(text)
    return 0


def load_models(path: str, namespace: str | None = None) -> list[ManagedModel]:
    """Read every ManagedModel in a file; all problems of all documents at once."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as err:
        raise UsageProblem([f"cannot read {path}: {err.strerror or err}"]) from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(err, "problem", None) or str(err)
        raise UsageProblem([f"{path} is not valid YAML{where}: {reason}"]) from None
    if not documents:
        raise UsageProblem([f"{path} holds no document"])
    models: list[ManagedModel] = []
    lines: list[str] = []
    for index, document in enumerate(documents):
        prefix = f"{path}: " if len(documents) == 1 else f"{path} (document {index + 1}): "
        if namespace and isinstance(document, dict):
            metadata = document.setdefault("metadata", {})
            if isinstance(metadata, dict):
                metadata.setdefault("namespace", namespace)
        try:
            models.append(parse_managed_model(document))
        except InvalidManagedModel as invalid:
            lines += [f"{prefix}{p}" for p in invalid.problems]
    if lines:
        raise UsageProblem(lines)
    return models


def run_validate(args: argparse.Namespace) -> int:
    for model in load_models(args.filename):
        registry = model.spec.registry
        if registry is not None:
            mlflow = registry.mlflow
            print(
                f"{args.filename}: ManagedModel {model.name} is valid (versions from MLflow "
                f"model {mlflow.model}, alias {mlflow.alias}, at {mlflow.tracking_uri})"
            )
            continue
        count = len(model.spec.versions)
        print(
            f"{args.filename}: ManagedModel {model.name} is valid ({count} "
            f"version{'s' if count != 1 else ''}, target {model.spec.target})"
        )
    return 0


def run_render(args: argparse.Namespace) -> int:
    models = load_models(args.filename, args.namespace)
    runtimes = default_runtimes()
    documents: list[str] = []
    for model in models:
        if model.spec.registry is not None:
            raise UsageProblem(
                [
                    f"{args.filename}: {model.name} takes its versions from a model registry "
                    "when the operator polls it; render a copy with spec.versions instead "
                    "(the live object's status.registry lists the versions and URIs)"
                ]
            )
        weights = None
        if args.weights:
            try:
                weights = parse_weights(args.weights, [v.name for v in model.spec.versions])
            except ValueError as err:
                raise UsageProblem([str(err)]) from None
        state = default_render_state(
            model,
            weights,
            legacy_raw_deployment=args.kserve_legacy_raw_deployment,
            gateway_flavor=args.gateway_flavor,
        )
        try:
            rendered = render_model(model, state, runtimes)
        except UnservableModel as unservable:
            raise UsageProblem([f"{args.filename}: {p}" for p in unservable.problems]) from None
        except RenderError as err:
            raise UsageProblem([str(err)]) from None
        for warning in rendered.warnings:
            print(f"warning: {model.name}: {warning}", file=sys.stderr)
        documents += [yaml.safe_dump(obj, sort_keys=False, width=100) for obj in rendered.objects]
    sys.stdout.write("---\n" + "---\n".join(documents))
    return 0
