"""A small file-based model store: `<root>/<model>/<version>/` holding the artifact and a
`model.yaml` card (format, framework version, training metrics, stage).

`build` trains the sample models (scikit-learn), `serve` serves one version with KServe's
model server (kserve). Neither is imported here: the store itself needs only PyYAML.
"""

from modelpilot.store.card import CARD_FILE, STAGES, ModelCard, StoreError
from modelpilot.store.layout import ModelStore, StoredVersion, default_root

__all__ = [
    "CARD_FILE",
    "STAGES",
    "ModelCard",
    "ModelStore",
    "StoreError",
    "StoredVersion",
    "default_root",
]
