"""`modelpilot store build|list|serve|serve-repository`: the sample model store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelpilot.cli.common import UsageProblem, guarded
from modelpilot.store import ModelStore, StoredVersion, StoreError

DEFAULT_PORT = 8080  # KServe's model server port


def add_commands(commands: Any) -> None:
    store = commands.add_parser(
        "store",
        help="the local model store: build the sample models, list them, serve one",
        description="A file-based model store laid out <model>/<version>/ with the artifact "
        "and a model.yaml card. Root: --root, else $MODELPILOT_MODEL_STORE, else "
        "./model-store.",
    )
    sub = store.add_subparsers(dest="store_command", required=True, metavar="STORE_COMMAND")

    build = sub.add_parser(
        "build",
        help="train the sample models (iris v1 and v2, scikit-learn) into the store",
        description="Train iris v1 (logistic regression) and v2 (random forest) "
        "deterministically and write them with their cards. Needs scikit-learn.",
    )
    _root_argument(build)
    build.set_defaults(handler=guarded(run_build))

    listing = sub.add_parser("list", help="models, versions, stages and metrics")
    _root_argument(listing)
    listing.set_defaults(handler=guarded(run_list))

    serve = sub.add_parser(
        "serve",
        help="serve one version with KServe's model server (v1 and v2 protocols)",
        description="Serve MODEL VERSION locally with KServe's Python model server under "
        "the model's own name, the same for every version: "
        "POST /v1/models/NAME:predict or /v2/models/NAME/infer. Needs the serve extra "
        "(pip install 'modelpilot[serve]').",
    )
    _root_argument(serve)
    serve.add_argument("model", help="model name, e.g. iris")
    serve.add_argument("version", help="version name, e.g. v1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (8080)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (127.0.0.1; 0.0.0.0 for all)"
    )
    serve.add_argument("--name", help="the name clients call (default: the model's name)")
    serve.set_defaults(handler=guarded(run_serve))

    many = sub.add_parser(
        "serve-repository",
        help="serve many versions in one server, each loaded on request (as ModelMesh)",
        description="Serve the stored versions linked in DIRECTORY (each entry a link to "
        "<store>/<model>/<version>, named as clients call it) with KServe's model server, "
        "each once asked to: POST /v2/repository/models/NAME/load (again to swap in what "
        "the link names now, the old one serving until the new one is loaded), then "
        "/v2/models/NAME/infer. Needs the serve extra.",
    )
    many.add_argument("directory", help="directory of links to stored versions")
    many.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (8080)")
    many.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    many.set_defaults(handler=guarded(run_serve_repository))


def _root_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="store directory")


def run_build(args: argparse.Namespace) -> int:
    from modelpilot.store.build import build

    try:
        build(args.root)
    except StoreError as err:
        raise UsageProblem([str(err)]) from None
    return 0


def format_table(versions: list[StoredVersion]) -> str:
    metric_names = sorted({name for v in versions for name in v.card.metrics})
    header = ["MODEL", "VERSION", "STAGE", "FORMAT", "FRAMEWORK", "ALGORITHM"]
    header += [name.upper() for name in metric_names]
    rows = [header]
    for stored in versions:
        card = stored.card
        rows.append(
            [
                card.name,
                card.version,
                card.stage,
                card.format,
                f"{card.framework} {card.framework_version}".strip(),
                card.algorithm,
                *(f"{card.metrics[m]:.4f}" if m in card.metrics else "-" for m in metric_names),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def run_list(args: argparse.Namespace) -> int:
    store = ModelStore(args.root)
    try:
        versions = store.all_versions()
    except StoreError as err:
        raise UsageProblem([str(err)]) from None
    if not versions:
        print(f"no models in {store.root}; run `modelpilot store build`", file=sys.stderr)
        return 0
    sys.stdout.write(format_table(versions))
    return 0


def run_serve_repository(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UsageProblem([f"--port {args.port} is not a TCP port"])
    try:
        from modelpilot.store.serve import serve_repository
    except ImportError as err:
        raise UsageProblem(
            [f"serving needs the serve extra: pip install 'modelpilot[serve]' ({err})"]
        ) from None
    serve_repository(args.directory, port=args.port, host=args.host)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UsageProblem([f"--port {args.port} is not a TCP port"])
    try:
        stored = ModelStore(args.root).get(args.model, args.version)
    except StoreError as err:
        raise UsageProblem([str(err)]) from None
    try:
        from modelpilot.store.serve import serve
    except ImportError as err:
        raise UsageProblem(
            [f"serving needs the serve extra: pip install 'modelpilot[serve]' ({err})"]
        ) from None
    name = args.name or stored.card.name
    print(
        f"serving {stored.card.name}/{stored.card.version} ({stored.card.algorithm}) as "
        f"{name!r} on http://{args.host}:{args.port}: POST /v1/models/{name}:predict, "
        f"/v2/models/{name}/infer",
        file=sys.stderr,
        flush=True,
    )
    serve(stored, name=name, port=args.port, host=args.host)
    return 0
