"""modelpilot: ship ML model versions on Kubernetes with KServe and canary rollouts."""

__version__ = "0.1.0"
