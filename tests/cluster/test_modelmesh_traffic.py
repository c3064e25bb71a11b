"""ModelMesh mode under real requests: Traefik (a real Gateway API data plane) routes by
the operator's HTTPRoute to `modelmesh-serving`, behind which the ModelMesh stand-in
runs a real KServe model server holding every model of the namespace by its
InferenceService's name (iris v1 and v2 from the model store, and the stable name).

Traefik applies a rule's filters but not a backend's (its Gateway API provider reads
only rule filters), so here the weighted split reaches the stable name unrewritten: the
stable version, then the promoted one once ModelMesh (here: the stand-in's server) has
loaded it. A pinned client is rewritten to its version at the rule. Both hold through a
promotion with no failed request. The weighted split's per-version rewrite is proven by
the render tests (tests/unit/test_model_mesh.py), not by requests.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelpilot.api.kinds import MANAGED_MODEL
from modelpilot.handlers.runner import OperatorThread
from modelpilot.k8s.client import Kube
from modelpilot_dev.gateway import TRAEFIK_SETTINGS, LocalGateway
from modelpilot_dev.load import Load
from modelpilot_dev.standins import StandIns
from tests.cluster.helpers import annotate, describe_model, eventually, sample, wait_carried

pytestmark = pytest.mark.cluster
RATE = 50.0  # requests per second, per client


def status_of(kube: Kube, namespace: str) -> dict[str, Any]:
    return ((kube.get(MANAGED_MODEL, "iris", namespace) or {}).get("status")) or {}


def answered_by(load: Load, version: str) -> float | None:
    """When the first request answered by `version` had its answer: a request sent after
    that is routed and served by what answered it, or by something later."""
    return next((a.at + a.seconds for a in list(load.answers) if a.version == version), None)


def test_a_promotion_in_modelmesh_mode_moves_real_traffic_with_no_failed_request(
    kube: Kube, namespace: str, standins: StandIns, gateway: LocalGateway
) -> None:
    document = sample("iris-modelmesh", namespace)
    host = f"iris.{namespace}.example.com"
    document["spec"]["versions"] = [
        {"name": "v1", "storageUri": "pvc://model-store/iris/v1"},
        {"name": "v2", "storageUri": "pvc://model-store/iris/v2"},
    ]
    document["spec"]["traffic"] = {
        "gatewayRef": {"name": gateway.name, "namespace": gateway.namespace},
        "hostnames": [host],
    }
    document["spec"]["rollout"] = {"target": "v1", "stepWeights": [50], "interval": "2s"}
    explain = lambda: describe_model(kube, namespace, "iris")  # noqa: E731
    with OperatorThread(kube, TRAEFIK_SETTINGS, namespaces=[namespace]):
        kube.apply(document, manager="test-user")
        eventually(
            lambda: status_of(kube, namespace).get("phase") == "Stable",
            timeout=120,
            what="iris stable on v1",
            explain=explain,
        )
        eventually(
            lambda: gateway.request("/v2/models/iris/ready", host=host)[0] == 200,
            timeout=60,
            what="the gateway serving iris through modelmesh-serving",
        )
        # v2 turns ready (loaded) after v1's Stable, and its pin rule reaches the route in a
        # later write: until then a pinned request falls to the split, the stable name.
        wait_carried(kube, namespace, "iris")
        pinned = Load(
            gateway.url, host=host, model="iris", rate=RATE, seconds=240,
            headers={"x-model-version": "v2"},
        )  # fmt: skip
        with Load(gateway.url, host=host, model="iris", rate=RATE, seconds=240) as load, pinned:
            load.wait_answers(load.started, 100)
            # The route the apiserver holds carries the pin; Traefik applies it a little
            # later, and until then a pinned request falls to the split (v1). The pin is
            # live once a pinned request has been answered by v2.
            pin_live = eventually(
                lambda: answered_by(pinned, "v2"), timeout=60, what="the pin answering v2"
            )
            pinned.wait_answers(pin_live, 100)
            changed = copy.deepcopy(document)
            changed["spec"]["rollout"]["target"] = "v2"
            kube.apply(changed, manager="test-user")
            eventually(
                lambda: status_of(kube, namespace).get("phase") == "WaitingPromotion",
                timeout=90,
                what="the last step",
                explain=explain,
            )
            before_promotion = load.tally(load.started)
            annotate(kube, changed, "modelpilot.io/promote", "v2")
            eventually(
                lambda: status_of(kube, namespace).get("stableVersion") == "v2",
                timeout=60,
                what="v2 promoted",
                explain=explain,
            )
            # The stable name turns to v2 once the server has loaded it for that name.
            switched = eventually(
                lambda: answered_by(load, "v2"), timeout=60, what="the stable name answering v2"
            )
            after = load.wait_answers(switched, 100)
        total, pinned_total = load.tally(), pinned.tally()
        pinned_live = pinned.tally(pin_live)

    print(
        f"\nunpinned: {total.line()} (before promotion: {before_promotion.line()}; after the "
        f"switch: {after.line()}), p99 {total.p99_ms} ms\npinned to v2: {pinned_total.line()} "
        f"(once the pin was live: {pinned_live.line()})"
    )
    assert total.failed + total.errors == 0, total.statuses
    assert pinned_total.failed + pinned_total.errors == 0, pinned_total.statuses
    # Before the promotion the split (no per-backend rewrite on Traefik) is all the
    # stable name's, v1; after the switch all v2 (the server swaps the name at once); the
    # pin, once live, is v2 all along.
    assert before_promotion.by_version == {"v1": before_promotion.requests}
    assert after.by_version == {"v2": after.requests}
    assert pinned_live.by_version == {"v2": pinned_live.requests}
    assert pinned_live.requests >= 100
