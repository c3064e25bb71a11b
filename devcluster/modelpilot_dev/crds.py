"""The CRDs and default objects the simulated cluster starts with."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelpilot_dev import tools
from modelpilot_dev.checkout import manifests
from modelpilot_dev.procs import ClusterError

if TYPE_CHECKING:
    import urllib3


def _crd_documents(paths: list[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            # Gateway API's folder may hold other objects (e.g. admission policies);
            # the simulated cluster only needs the types.
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return docs


def managedmodel_crds() -> list[dict[str, Any]]:
    """modelpilot's own CRDs; none until the repo has generated them."""
    crd_dir = manifests() / "crd"
    if not crd_dir.is_dir():
        return []
    return _crd_documents(sorted(crd_dir.glob("*.yaml")))


def gateway_api_crds() -> list[dict[str, Any]]:
    return _crd_documents(sorted(tools.gateway_api_crd_dir().glob("*.yaml")))


def traefik_crds() -> list[dict[str, Any]]:
    """Traefik's own CRDs (its kubernetescrd provider watches them all)."""
    return _crd_documents([tools.traefik_crd_file()])


def kserve_crds() -> list[dict[str, Any]]:
    """Generated from the kserve SDK; cached in the tools dir, keyed by the SDK version
    and the generator's source (importing the SDK alone takes seconds)."""
    from modelpilot_dev import kserve_crds as generator  # heavy: kserve SDK

    source = Path(generator.__file__).read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    cache = tools.tools_dir() / "kserve-crds" / f"{generator.kserve_version()}-{digest}.json"
    if cache.is_file():
        return list(json.loads(cache.read_text()))
    crds = generator.generate()
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial")
    partial.write_text(json.dumps(crds))
    partial.replace(cache)
    return crds


def install_crds(
    api_client: client.ApiClient, crds: list[dict[str, Any]], timeout: float = 60.0
) -> None:
    """Create the CRDs and wait until each is Established (its API is served).

    Responses are read as raw JSON: turning KServe's half-megabyte schema into the
    client's model objects takes seconds per call.
    """
    ext = client.ApiextensionsV1Api(api_client)
    for crd in crds:
        try:
            # kubernetes' types want a V1CustomResourceDefinition; the client sends a dict as is.
            ext.create_custom_resource_definition(crd, _preload_content=False)  # type: ignore[arg-type]
        except ApiException as err:
            if err.status != 409:
                raise ClusterError(
                    f"CRD {crd['metadata']['name']} refused: {err.status} {err.body}"
                ) from err
    deadline = time.monotonic() + timeout
    pending = {crd["metadata"]["name"] for crd in crds}
    while pending:
        # kubernetes' types promise the parsed list; _preload_content=False returns the raw
        # urllib3 response instead.
        response = cast(
            "urllib3.BaseHTTPResponse",
            ext.list_custom_resource_definition(_preload_content=False),
        )
        listed = json.loads(response.data)
        for item in listed["items"]:
            name = item["metadata"]["name"]
            conditions = {c["type"]: c for c in (item.get("status") or {}).get("conditions") or []}
            if conditions.get("Established", {}).get("status") == "True":
                pending.discard(name)
            elif name in pending and conditions.get("NamesAccepted", {}).get("status") == "False":
                raise ClusterError(f"CRD {name}: {conditions['NamesAccepted'].get('message')}")
        if pending and time.monotonic() > deadline:
            raise ClusterError(f"CRDs not Established after {timeout:.0f}s: {sorted(pending)}")
        if pending:
            time.sleep(0.2)


def install_default_runtimes(api_client: client.ApiClient) -> int:
    from modelpilot.runtimes import default_cluster_serving_runtimes

    custom = client.CustomObjectsApi(api_client)
    runtimes = default_cluster_serving_runtimes()
    for runtime in runtimes:
        custom.create_cluster_custom_object(
            "serving.kserve.io", "v1alpha1", "clusterservingruntimes", runtime
        )
    return len(runtimes)
