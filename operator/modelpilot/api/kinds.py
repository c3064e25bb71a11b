"""The Kubernetes kinds modelpilot reads and writes, spelled once: group, version, kind
and plural, for the client, the watches, RBAC checks, the stand-ins, the bench and the
tests alike."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """plural.group, as RBAC rules and `kubectl auth can-i` name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


MANAGED_MODEL = Kind("modelpilot.io", "v1alpha1", "ManagedModel", "managedmodels")
INFERENCE_SERVICE = Kind("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices")
SERVING_RUNTIME = Kind("serving.kserve.io", "v1alpha1", "ServingRuntime", "servingruntimes")
CLUSTER_SERVING_RUNTIME = Kind(
    "serving.kserve.io", "v1alpha1", "ClusterServingRuntime", "clusterservingruntimes"
)
AUTOSCALER = Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
HTTP_ROUTE = Kind("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
GATEWAY = Kind("gateway.networking.k8s.io", "v1", "Gateway", "gateways")
DEPLOYMENT = Kind("apps", "v1", "Deployment", "deployments")
POD = Kind("", "v1", "Pod", "pods")
SERVICE = Kind("", "v1", "Service", "services")
EVENT = Kind("", "v1", "Event", "events")
# Traefik's own service kind: how the operator mirrors on --gateway-flavor traefik. Not
# watched (its CRD exists only where Traefik's CRD provider runs): read fresh.
TRAEFIK_SERVICE = Kind("traefik.io", "v1alpha1", "TraefikService", "traefikservices")
CUSTOM_RESOURCE_DEFINITION = Kind(
    "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions"
)

# What the operator applies for a model, in the order render_model emits them.
CHILD_KINDS = (INFERENCE_SERVICE, AUTOSCALER, HTTP_ROUTE)
# What a reconcile reads of a model's children (from the watch cache).
WATCHED_CHILD_KINDS = (*CHILD_KINDS, DEPLOYMENT)
KINDS_BY_NAME = {
    k.kind: k
    for k in (
        MANAGED_MODEL,
        INFERENCE_SERVICE,
        SERVING_RUNTIME,
        CLUSTER_SERVING_RUNTIME,
        AUTOSCALER,
        HTTP_ROUTE,
        GATEWAY,
        DEPLOYMENT,
        POD,
        SERVICE,
        TRAEFIK_SERVICE,
        CUSTOM_RESOURCE_DEFINITION,
    )
}

# KServe labels each predictor Deployment, Service and pod with its InferenceService.
KSERVE_ISVC_LABEL = "serving.kserve.io/inferenceservice"
# Which KServe controller handles an InferenceService (Standard, ModelMesh, ...).
KSERVE_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
# Knative's label on a revision's Deployment: the revision it runs.
KNATIVE_REVISION_LABEL = "serving.knative.dev/revision"
