"""modelpilot's development machinery, never shipped: the local cluster (a real control
plane built from the pins in hack/tools by `tools`, kwok's fake CPU and GPU nodes, KServe
CRDs generated from the kserve SDK in `kserve_crds`, the only module that imports it),
the KServe and gateway stand-ins, the demo, and a local model server.

It runs from a source checkout (`checkout` finds it) and imports the operator
(`modelpilot`); the operator never imports it.

    python -m modelpilot_dev tools      # build the pinned tools (cached)
    python -m modelpilot_dev cluster    # run a local cluster in the foreground
    python -m modelpilot_dev demo       # a canary rollout v1 -> v2 on it
"""
