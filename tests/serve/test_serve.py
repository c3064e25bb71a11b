"""`modelpilot store serve`: the store's iris models on KServe's Python model server,
started as a child process on a free loopback port, asked over the v1 and v2 (Open
Inference) protocols, then stopped."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from modelpilot.store import ModelStore
from modelpilot_dev.local_server import LocalServer

# A clear setosa, a borderline flower (the versions may disagree), a clear virginica.
PROBE = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3]]
SETOSA, VIRGINICA = 0, 2


def local_predictions(root: Path, version: str) -> list[int]:
    """What the artifact itself predicts, loaded here without the server."""
    import joblib

    estimator = joblib.load(ModelStore(root).get("iris", version).artifact_path)
    return [int(p) for p in estimator.predict(PROBE)]


def v2_request(rows: list[list[float]], datatype: str = "FP32") -> dict[str, Any]:
    flat = [value for row in rows for value in row]
    return {
        "id": "req-1",
        "inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": datatype, "data": flat}],
    }


def test_health_and_model_readiness(served_v1: LocalServer) -> None:
    assert served_v1.get("/v2/health/ready") == (200, {"ready": True})
    assert served_v1.get("/v2/models/iris/ready")[0] == 200
    assert served_v1.get("/v1/models/iris") == (200, {"name": "iris", "ready": True})


def test_v1_protocol_predicts_the_class(served_v1: LocalServer, store_root: Path) -> None:
    status, body = served_v1.post("/v1/models/iris:predict", {"instances": PROBE})
    assert status == 200
    assert body["predictions"] == local_predictions(store_root, "v1")
    assert body["predictions"][0] == SETOSA
    assert body["predictions"][2] == VIRGINICA


def test_v1_body_without_a_json_content_type(served_v1: LocalServer) -> None:
    # As `curl -d '{...}'` sends it: application/x-www-form-urlencoded.
    import urllib.request

    request = urllib.request.Request(
        served_v1.url + "/v1/models/iris:predict",
        data=b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert served_v1._request(request) == (200, {"predictions": [SETOSA]})


def test_v2_protocol_predicts_the_class(served_v1: LocalServer, store_root: Path) -> None:
    status, body = served_v1.post("/v2/models/iris/infer", v2_request(PROBE))
    assert status == 200
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "v1", "req-1")
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("predict", "INT64", [3])
    assert output["data"] == local_predictions(store_root, "v1")


def test_v2_accepts_integer_tensors(served_v1: LocalServer) -> None:
    status, body = served_v1.post("/v2/models/iris/infer", v2_request([[5, 3, 1, 0]], "INT64"))
    assert status == 200
    assert body["outputs"][0]["data"] == [SETOSA]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/models/iris:predict", {"instances": "x"}, "instances"),
        ("/v1/models/iris:predict", {"instances": [[1, 2]]}, "each row needs 4 features"),
        ("/v1/models/iris:predict", {"instances": [["a", "b", "c", "d"]]}, "rows of 4 numbers"),
        ("/v1/models/iris:predict", {"instances": [[1, 2, 3, 4], [1, 2]]}, "rows of 4 numbers"),
        ("/v1/models/iris:predict", {"instances": []}, "non-empty"),
        ("/v1/models/iris:predict", {"inputs": [[1, 2, 3, 4]]}, '"instances"'),
        ("/v1/models/iris:predict", [1, 2, 3, 4], '"instances"'),
        ("/v1/models/iris:predict", b"not json", "Unrecognized request format"),
        ("/v2/models/iris/infer", v2_request([[1, 2, 3]]), "cannot reshape"),
        ("/v2/models/iris/infer", {"inputs": []}, "one input tensor"),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a"] * 4}]},
            "datatype BYTES is not numeric",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
            "got shape [4]",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
            "each row needs 4 features",
        ),
    ],
)
def test_bad_payloads_get_a_400_with_a_message(
    served_v1: LocalServer, path: str, body: Any, message: str
) -> None:
    status, answer = served_v1.post(path, body)
    assert status == 400, answer
    assert message in answer["error"]


def test_malformed_v2_bodies_are_refused_with_details(served_v1: LocalServer) -> None:
    # FastAPI's own validation: a 422 that names the missing field.
    status, answer = served_v1.post("/v2/models/iris/infer", {"tensors": []})
    assert status == 422
    assert "inputs" in str(answer)


def test_an_unknown_model_is_a_404(served_v1: LocalServer) -> None:
    status, answer = served_v1.post("/v1/models/wine:predict", {"instances": PROBE})
    assert status == 404
    assert "wine" in answer["error"]


def test_every_version_answers_as_iris(
    served_v1: LocalServer, served_v2: LocalServer, store_root: Path
) -> None:
    # One served name for both versions, each answering with its own model.
    assert served_v2.get("/v2/models/iris/ready")[0] == 200
    assert served_v2.predict(PROBE) == local_predictions(store_root, "v2")
    status, body = served_v2.post("/v2/models/iris/infer", v2_request(PROBE))
    assert status == 200
    assert (body["model_name"], body["model_version"]) == ("iris", "v2")
    assert served_v1.predict(PROBE) == local_predictions(store_root, "v1")


def test_listens_on_loopback_only_and_stops_on_sigterm(store_root: Path) -> None:
    import psutil

    server = LocalServer("iris", "v2", root=store_root).start()
    try:
        server.wait_ready(timeout=90)
        assert server.pid is not None
        process = psutil.Process(server.pid)
        # psutil 6 renamed connections() (kserve pins psutil < 6 today).
        connections = getattr(process, "net_connections", process.connections)
        listening = {
            c.laddr.ip
            for c in connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
        }
        assert listening == {"127.0.0.1"}
        code = server.stop(grace=20)
    finally:
        server.close()
    assert code is not None and code != -signal.SIGKILL
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == "zombie"
