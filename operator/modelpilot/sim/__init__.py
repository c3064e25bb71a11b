"""A simulated Kubernetes cluster for tests and demos: real control-plane binaries
(built from the pins in hack/tools by `modelpilot.sim.tools`), fake nodes via kwok,
and KServe CRDs generated from the kserve SDK (`kserve_crds`, the only module here that
imports kserve). Nothing in this package is imported by the operator itself.

    python -m modelpilot.sim.tools   # build the tools
    python -m modelpilot.sim         # run a cluster in the foreground
"""
