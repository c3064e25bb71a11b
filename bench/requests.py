"""The operator's CPU per API request, by the path a request takes through the client:
what one write costs before the apiserver does anything (#19's floor per write).

python -m bench.requests [--repeat 300]

A JSON merge patch of one ConfigMap on the local control plane, the same request each
way: modelpilot's Kube facade (the DynamicClient, as the reconcile writes), the
kubernetes ApiClient alone (param_serialize + call_api, as the watch lists), and
urllib3 with the same TLS settings and token (HTTP, TLS and JSON only).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client

from modelpilot.k8s.client import Kube, api_client
from modelpilot_dev.cluster import ControlPlane

NAMESPACE = "bench-requests"
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/counter"
MERGE_PATCH = "application/merge-patch+json"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(label: str, send: Callable[[int], Any], repeat: int) -> None:
    send(0)  # a connection in the pool, the resource discovered
    cpu, started = cpu_seconds(), time.monotonic()
    for i in range(repeat):
        send(i)
    per_cpu = 1000 * (cpu_seconds() - cpu) / repeat
    per_wall = 1000 * (time.monotonic() - started) / repeat
    print(f"{label:<44} {per_cpu:5.2f} ms CPU  {per_wall:5.2f} ms wall per request")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    with ControlPlane(install_crds=False, hpa_sync_period=None) as plane:
        api = api_client(str(plane.kubeconfig))
        kube = Kube(api)
        # kubernetes' types want a V1Namespace; the client sends a dict as is.
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})  # type: ignore[arg-type]
        counter = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "counter", "namespace": NAMESPACE},
            "data": {"n": "0"},
        }
        kube.apply(counter)

        def through_kube(i: int) -> Any:
            return kube.patch(counter, {"data": {"n": str(i)}})

        def through_api_client(i: int) -> Any:
            method, url, headers, body, _ = api.param_serialize(
                "PATCH",
                PATH,
                header_params={"Content-Type": MERGE_PATCH, "Accept": "application/json"},
                body={"data": {"n": str(i)}},
                auth_settings=["BearerToken"],
            )
            response = api.call_api(method, url, header_params=headers, body=body).response
            return json.loads(response.data)

        conf = api.configuration
        pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=conf.ssl_ca_cert,
            cert_file=conf.cert_file,
            key_file=conf.key_file,
        )
        headers = {"Content-Type": MERGE_PATCH, "Accept": "application/json"}
        token = conf.auth_settings().get("BearerToken")
        if token:
            headers[token["key"]] = token["value"]

        def through_urllib3(i: int) -> Any:
            body = json.dumps({"data": {"n": str(i)}}).encode()
            response = pool.request("PATCH", conf.host + PATH, body=body, headers=headers)
            if response.status != 200:
                raise RuntimeError(f"PATCH answered {response.status}: {response.data[:200]!r}")
            return json.loads(response.data)

        print(f"{args.repeat} merge patches of one ConfigMap each way:")
        measure("Kube.patch (DynamicClient, the reconcile's)", through_kube, args.repeat)
        measure("ApiClient param_serialize + call_api", through_api_client, args.repeat)
        measure("urllib3 alone (HTTP, TLS, JSON)", through_urllib3, args.repeat)


if __name__ == "__main__":
    main()
