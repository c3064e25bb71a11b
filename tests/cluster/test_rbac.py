"""Least privilege, proven: the chart's ServiceAccount runs the operator.

The chart is installed with Helm; the operator then runs in this process, logged in with
a real token of the chart's ServiceAccount (TokenRequest API) on the RBAC-enforcing
apiserver, for its own client and for kopf's watches alike (the login handler passes the
same credentials on). KServe and the gateway do not run here: modelpilot_dev.standins
plays them (as admin), so the InferenceServices become Ready from the real scheduling
of their predictor pods on kwok's nodes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from modelpilot.api.kinds import (
    AUTOSCALER,
    DEPLOYMENT,
    HTTP_ROUTE,
    INFERENCE_SERVICE,
    MANAGED_MODEL,
)
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import ApiError, Kube
from modelpilot_dev.cluster import ControlPlane
from modelpilot_dev.standins import StandIns
from tests.cluster.helpers import describe_model, eventually, sample
from tests.cluster.test_chart import (
    Cli,
    delete_namespace,
    fresh_namespace,
    fullname,
    helm_release,
)

pytestmark = pytest.mark.cluster
USER = "test-user"
FAST = {"interval": "1s", "progressDeadline": "90s", "scaleDownDelay": "10m"}
ROLLOUT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Install:
    release_namespace: str
    models: str  # a namespace the operator manages
    elsewhere: str  # one it does not manage (with watchNamespaces set)
    service_account: str
    watch_namespaces: bool  # False: the chart's defaults, every namespace
    lease: str  # leader election's Lease, in release_namespace

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.release_namespace}:{self.service_account}"


@pytest.fixture
def namespaces(api_client: client.ApiClient) -> Iterator[tuple[str, str]]:
    """The release's namespace and one more, besides the `namespace` fixture's."""
    core = client.CoreV1Api(api_client)
    made = (fresh_namespace(core), fresh_namespace(core))
    yield made
    for name in made:
        delete_namespace(core, name)


@contextlib.contextmanager
def installed(
    cli: Cli, models: str, namespaces: tuple[str, str], *, watch: bool
) -> Iterator[Install]:
    """The chart in a namespace of its own: default values, or watchNamespaces={models}."""
    release_namespace, elsewhere = namespaces
    values = ["--set", f"watchNamespaces={{{models}}}"] if watch else []
    with helm_release(cli, release_namespace, *values) as release:
        # The Lease and the ServiceAccount are both named after the release.
        name = fullname(release)
        yield Install(release_namespace, models, elsewhere, name, watch, lease=name)


@pytest.fixture(params=["all-namespaces", "watch-namespaces"])
def install(
    request: pytest.FixtureRequest, cli: Cli, namespace: str, namespaces: tuple[str, str]
) -> Iterator[Install]:
    with installed(cli, namespace, namespaces, watch=request.param == "watch-namespaces") as it:
        yield it


@pytest.fixture
def scoped(cli: Cli, namespace: str, namespaces: tuple[str, str]) -> Iterator[Install]:
    with installed(cli, namespace, namespaces, watch=True) as it:
        yield it


def service_account_client(
    control_plane: ControlPlane, api_client: client.ApiClient, install: Install
) -> client.ApiClient:
    """An ApiClient that presents a real token of the chart's ServiceAccount."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = (
        client.CoreV1Api(api_client)
        .create_namespaced_service_account_token(
            install.service_account, install.release_namespace, request
        )
        .status.token
    )
    # Built from scratch: a Configuration loaded from the kubeconfig would put the
    # admin's token back on every request (its refresh hook).
    kubeconfig = yaml.safe_load(control_plane.kubeconfig.read_text())
    configuration = client.Configuration(
        host=control_plane.server,
        api_key={"authorization": token},
        api_key_prefix={"authorization": "Bearer"},
    )
    configuration.ssl_ca_cert = kubeconfig["clusters"][0]["cluster"]["certificate-authority"]
    configuration.connection_pool_maxsize = 16
    sa = client.ApiClient(configuration)
    review = client.AuthenticationV1Api(sa).create_self_subject_review(client.V1SelfSubjectReview())
    assert review.status.user_info.username == install.subject
    return sa


def forbidden(records: list[logging.LogRecord]) -> list[str]:
    """Log lines (with their tracebacks) that tell of a refused API call."""
    handler = logging.Handler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    found = []
    for record in records:
        if record.name.startswith("modelpilot_dev"):
            continue  # the stand-ins run as the admin: their errors are not the operator's
        text = handler.format(record)
        if "403" in text or "forbidden" in text.lower():
            found.append(text)
    return found


def status_of(kube: Kube, namespace: str) -> dict[str, Any]:
    found = kube.get(MANAGED_MODEL, "iris", namespace)
    return (found or {}).get("status") or {}


def stable_on(kube: Kube, namespace: str, version: str) -> bool:
    status = status_of(kube, namespace)
    return (
        status.get("phase") == "Stable"
        and status.get("stableVersion") == version
        and all(v.get("ready") for v in status.get("versions") or [{}])
    )


def test_a_full_rollout_as_the_charts_service_account(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    kube: Kube,
    standins: StandIns,
    scoped: Install,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every call the operator and kopf make, for a whole canary rollout and the
    model's deletion, is allowed by the chart's RBAC: none is refused (403)."""
    caplog.set_level(logging.WARNING)
    ns = scoped.models
    document = sample("sklearn-iris", ns)
    # Without hostnames, status.url comes from the Gateway, in another namespace.
    document["spec"]["traffic"].pop("hostnames")
    document["spec"]["rollout"] = {**FAST, "target": "v1", "promotion": "auto"}
    with (
        service_account_client(control_plane, api_client, scoped) as sa,
        OperatorThread(Kube(sa), namespaces=[ns]) as operator,
    ):
        kube.apply(document, manager=USER)
        explain = lambda: describe_model(kube, ns, "iris")  # noqa: E731
        eventually(
            lambda: stable_on(kube, ns, "v1"),
            timeout=ROLLOUT_TIMEOUT,
            what="v1 stable",
            explain=explain,
        )
        document["spec"]["rollout"]["target"] = "v2"
        kube.apply(document, manager=USER)
        eventually(
            lambda: stable_on(kube, ns, "v2"),
            timeout=ROLLOUT_TIMEOUT,
            what="v2 promoted",
            explain=explain,
        )
        final = kube.get(MANAGED_MODEL, "iris", ns)
        assert final is not None
        assert final["status"]["weights"] == {"v2": 100}
        assert [h["result"] for h in final["status"]["history"]] == ["Promoted"]
        # No kopf daemons, so no finalizer of kopf's: the operator need not be running
        # for a model to be deleted.
        assert "kopf.modelpilot.io/finalizer" not in (final["metadata"].get("finalizers") or [])
        events = client.CoreV1Api(api_client).list_namespaced_event(
            ns, field_selector="involvedObject.name=iris,source=modelpilot"
        )
        assert {e.reason for e in events.items} >= {"Promoted"}
        # Deleting the model needs nothing of the operator: it goes at once, and the
        # garbage collector takes its children by their owner references.
        kube.delete(MANAGED_MODEL, "iris", ns)
        eventually(lambda: kube.get(MANAGED_MODEL, "iris", ns) is None, what="the model deleted")
        eventually(
            lambda: kube.get(INFERENCE_SERVICE, "iris-v1", ns) is None,
            what="its children collected",
        )
    assert operator.error is None
    assert forbidden(caplog.records) == []


SECRETS_AND_PODS = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods/exec"),
    ("create", DEPLOYMENT.resource),
    ("patch", DEPLOYMENT.resource),
    ("create", "serviceaccounts/token"),
    ("delete", MANAGED_MODEL.resource),
    ("update", MANAGED_MODEL.resource),
]


def test_the_service_account_is_denied_what_it_does_not_use(
    cli: Cli, control_plane: ControlPlane, api_client: client.ApiClient, install: Install
) -> None:
    ns = install.models
    # The control: the same question gets a yes where the chart grants it.
    assert cli.can_i(install.subject, "patch", INFERENCE_SERVICE.resource, "-n", ns)
    assert cli.can_i(install.subject, "patch", MANAGED_MODEL.resource, "-n", ns)
    everywhere = ("watch", MANAGED_MODEL.resource, "--all-namespaces")
    assert cli.can_i(install.subject, *everywhere) is not install.watch_namespaces
    for verb, resource in SECRETS_AND_PODS:
        assert not cli.can_i(install.subject, verb, resource, "-n", ns), (verb, resource)
    assert not cli.can_i(install.subject, "list", "secrets", "--all-namespaces")
    assert not cli.can_i(install.subject, "create", "clusterrolebindings.rbac.authorization.k8s.io")
    assert not cli.can_i(install.subject, "patch", "customresourcedefinitions.apiextensions.k8s.io")

    # And with the ServiceAccount's own token, not impersonation.
    with service_account_client(control_plane, api_client, install) as sa:
        core = client.CoreV1Api(sa)
        with pytest.raises(ApiException) as refused:
            core.list_namespaced_secret(ns)
        assert refused.value.status == 403
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        with pytest.raises(ApiException) as refused:
            core.create_namespaced_pod(ns, pod)
        assert refused.value.status == 403


def test_with_watch_namespaces_it_cannot_act_in_another_namespace(
    cli: Cli, control_plane: ControlPlane, api_client: client.ApiClient, scoped: Install
) -> None:
    subject, ns, elsewhere = scoped.subject, scoped.models, scoped.elsewhere
    for verb, resource in [
        ("patch", INFERENCE_SERVICE.resource),
        ("delete", AUTOSCALER.resource),
        ("patch", HTTP_ROUTE.resource),
        ("list", MANAGED_MODEL.resource),
        ("create", "events"),
    ]:
        assert cli.can_i(subject, verb, resource, "-n", ns), (verb, resource, ns)
        assert not cli.can_i(subject, verb, resource, "-n", elsewhere), (verb, resource)
        assert not cli.can_i(subject, verb, resource, "--all-namespaces"), (verb, resource)

    isvc = {
        "apiVersion": INFERENCE_SERVICE.api_version,
        "kind": INFERENCE_SERVICE.kind,
        "metadata": {"name": "intruder", "namespace": elsewhere},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
    }  # refused before it is looked at
    with service_account_client(control_plane, api_client, scoped) as sa:
        operator_kube = Kube(sa)
        assert operator_kube.list(MANAGED_MODEL, ns) == []  # allowed where it is installed for
        for attempt in (
            lambda: operator_kube.list(MANAGED_MODEL, elsewhere),
            lambda: operator_kube.apply(isvc),
            lambda: operator_kube.list(INFERENCE_SERVICE),  # all namespaces
        ):
            with pytest.raises(ApiError) as refused:
                attempt()
            assert refused.value.status == 403


LEASES = "leases.coordination.k8s.io"


def test_the_service_account_holds_its_lease_in_the_release_namespace_only(
    cli: Cli, control_plane: ControlPlane, api_client: client.ApiClient, install: Install
) -> None:
    """Leader election: create leases, get and update its own Lease, in the release
    namespace only (a Role there, whether or not watchNamespaces is set); never list or
    watch them, never touch another controller's Lease."""
    subject, home, lease = install.subject, install.release_namespace, install.lease
    assert cli.can_i(subject, "create", LEASES, "-n", home)
    for verb in ("get", "update"):
        assert cli.can_i(subject, verb, f"{LEASES}/{lease}", "-n", home), verb
        assert not cli.can_i(subject, verb, f"{LEASES}/kube-scheduler", "-n", home), verb
    for verb in ("list", "watch", "delete", "patch", "deletecollection"):
        assert not cli.can_i(subject, verb, LEASES, "-n", home), verb
    assert not cli.can_i(subject, "patch", f"{LEASES}/{lease}", "-n", home)
    for other in (install.models, install.elsewhere, "kube-system"):
        assert not cli.can_i(subject, "create", LEASES, "-n", other), other
        for verb in ("get", "update"):
            assert not cli.can_i(subject, verb, f"{LEASES}/{lease}", "-n", other), (verb, other)
    assert not cli.can_i(subject, "create", LEASES, "--all-namespaces")

    # And with the ServiceAccount's own token: what leader election does, for real.
    body = {
        "metadata": {"name": lease},
        "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15},
    }
    with service_account_client(control_plane, api_client, install) as sa:
        coordination = client.CoordinationV1Api(sa)
        coordination.create_namespaced_lease(home, body)
        held = coordination.read_namespaced_lease(lease, home)
        held.spec.holder_identity = "replica-b"
        taken = coordination.replace_namespaced_lease(lease, home, held)
        assert taken.spec.holder_identity == "replica-b"
        for attempt in (
            lambda: coordination.list_namespaced_lease(home),
            lambda: coordination.create_namespaced_lease(install.elsewhere, body),
            lambda: coordination.read_namespaced_lease(lease, install.models),
        ):
            with pytest.raises(ApiException) as refused:
                attempt()
            assert refused.value.status == 403
