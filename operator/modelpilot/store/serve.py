"""Serve one stored version with KServe's Python model server (the `serve` extra).

The model answers on the Open Inference Protocol v2 (`/v2/models/NAME/infer`, ready at
`/v2/models/NAME/ready`) and on KServe's v1 protocol (`/v1/models/NAME:predict`), under
one name for every version (as modelpilot's `servedModelName`), so a client never has
to know which version answers. Predictions are class indices, as KServe's sklearn
server returns them. A payload that is not rows of numbers of the model's width gets a
400 with a message.

Of the store, only this module imports kserve (heavy: FastAPI, grpc, pandas); the
`store serve` command imports it when it runs, so nothing else pays for it.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from modelpilot.store.layout import ModelStore, StoredVersion

# kserve parses sys.argv when imported (its model_server module reads its own flags);
# modelpilot's arguments are none of its business.
_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    import kserve
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
finally:
    sys.argv = _argv

NUMERIC_DATATYPES = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32"}
)


class StoredModel(kserve.Model):  # type: ignore[misc]
    """A scikit-learn estimator from the store, loaded with joblib."""

    def __init__(self, name: str, stored: StoredVersion) -> None:
        super().__init__(name)
        self.stored = stored
        self.width = len(stored.card.features) or None
        self._estimator: Any = None

    def load(self) -> bool:
        import joblib

        self._estimator = joblib.load(self.stored.artifact_path)
        self.width = int(getattr(self._estimator, "n_features_in_", self.width or 0)) or None
        self.ready = True
        return bool(self.ready)

    def predict(
        self,
        payload: dict[str, Any] | bytes | str | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, InferRequest):
            return self._predict_v2(payload)
        if isinstance(payload, bytes | str):
            # A v1 body sent without a JSON content type (as `curl -d` sends it).
            try:
                payload = json.loads(payload)
            except ValueError:
                raise InvalidInput("expected a JSON body") from None
        if not isinstance(payload, dict) or "instances" not in payload:
            raise InvalidInput('expected a JSON object with "instances": a list of rows')
        rows = self._rows(payload["instances"], '"instances"')
        return {"predictions": self._estimator.predict(rows).tolist()}

    def _predict_v2(self, request: InferRequest) -> InferResponse:
        if len(request.inputs) != 1:
            raise InvalidInput(f"expected one input tensor, got {len(request.inputs)}")
        tensor = request.inputs[0]
        if tensor.datatype not in NUMERIC_DATATYPES:
            raise InvalidInput(
                f"input {tensor.name!r}: datatype {tensor.datatype} is not numeric "
                "(FP32, FP64 or an integer type)"
            )
        try:
            values = tensor.as_numpy()
        except (ValueError, TypeError) as err:
            raise InvalidInput(
                f"input {tensor.name!r} ({tensor.datatype}, shape {tensor.shape}): {err}"
            ) from None
        rows = self._rows(values, f"input {tensor.name!r}")
        predictions = self._estimator.predict(rows).astype(np.int64)
        output = InferOutput(
            name="predict", shape=list(predictions.shape), datatype="INT64", data=[]
        )
        output.set_data_from_numpy(predictions, binary_data=False)
        return InferResponse(
            response_id=request.id or "",
            model_name=self.name,
            model_version=self.stored.card.version,
            infer_outputs=[output],
        )

    def _rows(self, data: Any, what: str) -> np.ndarray:
        """A 2-D float array of the model's width, or a 400 that says what is wrong."""
        try:
            rows = np.asarray(data, dtype=np.float64)
        except (ValueError, TypeError):
            raise InvalidInput(
                f"{what}: expected rows of {self.width} numbers, e.g. [[5.1, 3.5, 1.4, 0.2]]"
            ) from None
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise InvalidInput(
                f"{what}: expected a non-empty list of rows of {self.width} numbers, "
                f"got shape {list(rows.shape)}"
            )
        if self.width is not None and rows.shape[1] != self.width:
            raise InvalidInput(
                f"{what}: each row needs {self.width} features "
                f"({', '.join(self.stored.card.features) or 'numbers'}), got {rows.shape[1]}"
            )
        if not all(math.isfinite(v) for v in rows.flat):
            raise InvalidInput(f"{what}: values must be finite numbers")
        return rows


class _Server(kserve.ModelServer):  # type: ignore[misc]
    """kserve's ModelServer, listening on `host` (it always binds 0.0.0.0 otherwise)."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    def setup_event_loop(self) -> None:
        # Runs after start() made the REST server and before it binds (kserve 0.21).
        rest = getattr(self, "_rest_server", None)
        if rest is not None:
            rest.config.host = self.host
        super().setup_event_loop()


def serve(stored: StoredVersion, *, name: str, port: int, host: str = "127.0.0.1") -> None:
    """Load the version and serve it until SIGINT or SIGTERM (blocks)."""
    # fastapi warns on every response that kserve 0.21 still uses ORJSONResponse.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    model = StoredModel(name, stored)
    model.load()
    server = _Server(host, http_port=port, enable_grpc=False, workers=1)
    server.start([model])


class StoreRepository(kserve.ModelRepository):  # type: ignore[misc]
    """Many stored versions in one server, as a multi-model runtime pod holds them: each
    entry of `directory` (a link to a stored version's directory, named as clients call
    it) is loaded on request through the v2 repository extension
    (`POST /v2/repository/models/NAME/load`). Loading a name again swaps in the version
    its link names now only once that one is loaded: requests meanwhile get the old one,
    as ModelMesh serves the previous model until the new one is loaded."""

    def __init__(self, directory: str) -> None:
        super().__init__(models_dir=directory)

    def load(self, name: str) -> bool:
        # The link names the version: <store root>/<model>/<version>.
        target = (Path(self.models_dir) / name).resolve()
        stored = ModelStore(target.parent.parent).get(target.parent.name, target.name)
        model = StoredModel(name, stored)
        model.load()
        self.update(model)
        return bool(model.ready)


def serve_repository(directory: str, *, port: int, host: str = "127.0.0.1") -> None:
    """Serve the versions linked in `directory` as they are loaded (blocks)."""
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    server = _Server(
        host,
        http_port=port,
        enable_grpc=False,
        workers=1,
        registered_models=StoreRepository(directory),
    )
    server.start([])
