"""A real KServe model server for a scikit-learn iris model, as KServe's sklearnserver builds it.

    python kserve_iris.py --model_name sklearn-iris --model_dir DIR --http_port N [--grpc_port M]
                          [--fail-percent P] [--delay-ms D]

DIR holds one `model.joblib` (see train_models.py). The server answers V1 `POST /v1/models/NAME:predict`
and V2 `POST /v2/models/NAME/infer`, plus `GET /v2/health/ready`. A request header `X-E2E-Delay-Ms: N`
(test-only) delays the prediction by N ms and prints `e2e: predict started` when it begins. gRPC is off unless --grpc_port is given.

Test-only faults of a bad canary (the canary-analysis tests): `--fail-percent P` answers HTTP 500 (KServe's
InferenceError) for P % of the predictions, spread evenly and deterministically (every request whose share crosses
a whole failure: 30 fails 3 of every 10); `--delay-ms D` adds D ms to every prediction. Health and metadata
endpoints are never affected, so the pod stays ready, as a model that answers badly does.

Unlike a pod, this process binds 127.0.0.1 only (KServe itself binds 0.0.0.0 / [::]): the tests run on
loopback and nothing here should listen on other interfaces.
"""

import argparse
import asyncio
import pathlib
import sys
from typing import Dict, Optional, Union

import joblib
import uvicorn
from kserve import InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.errors import InferenceError, ModelMissingError
from kserve.protocol.grpc import server as grpc_server_module
from kserve.protocol.rest import server as rest_server_module
from kserve.utils.utils import get_predict_input, get_predict_response

LOOPBACK = "127.0.0.1"


def _bind_loopback_only() -> None:
    """Make KServe's HTTP (uvicorn) and gRPC servers listen on 127.0.0.1 instead of every interface."""

    class LoopbackConfig(uvicorn.Config):
        def __init__(self, *args, **kwargs):
            kwargs["host"] = LOOPBACK
            super().__init__(*args, **kwargs)

    rest_server_module.uvicorn = type("uvicorn_loopback", (), {"Config": LoopbackConfig, "Server": uvicorn.Server})
    # _RefreshingServer and friends were bound at import time; only Config is looked up through the module name.

    real_aio_server = grpc_server_module.aio.server

    def loopback_aio_server(*args, **kwargs):
        server = real_aio_server(*args, **kwargs)
        real_add = server.add_insecure_port

        def add_insecure_port(address: str) -> int:
            port = address.rsplit(":", 1)[1]
            return real_add(f"{LOOPBACK}:{port}")

        server.add_insecure_port = add_insecure_port
        return server

    grpc_server_module.aio = type("aio_loopback", (), {"server": staticmethod(loopback_aio_server)})


class SKLearnIrisModel(Model):
    """Loads `model.joblib` from the model dir and predicts class indices, like kserve/sklearnserver."""

    def __init__(self, name: str, model_dir: str, fail_percent: int = 0, delay_ms: int = 0):
        super().__init__(name)
        self.model_dir = model_dir
        self.fail_percent = fail_percent
        self.delay_ms = delay_ms
        self._predictions = 0
        self._model = None
        self.ready = False

    def load(self) -> bool:
        paths = sorted(pathlib.Path(self.model_dir).glob("*.joblib")) + sorted(pathlib.Path(self.model_dir).glob("*.pkl"))
        if not paths:
            raise ModelMissingError(self.model_dir)
        if len(paths) > 1:
            raise RuntimeError(f"more than one model file in {self.model_dir}: {paths}")
        self._model = joblib.load(paths[0])
        self.ready = True
        return self.ready

    async def predict(self, payload: Union[Dict, InferRequest], headers: Optional[Dict[str, str]] = None) -> Union[Dict, InferResponse]:
        self._predictions += 1  # one event loop: no lock needed
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        n = self._predictions
        if self.fail_percent and (n * self.fail_percent) // 100 != ((n - 1) * self.fail_percent) // 100:
            raise InferenceError(f"e2e: injected failure ({self.fail_percent}% of predictions fail)")
        delay_ms = _delay_ms(headers)
        if delay_ms:
            # Test-only: simulates a slow inference so that the gateway has requests in flight. The line tells
            # the test that this request has reached the model (it polls the log for it).
            print(f"e2e: predict started, delay {delay_ms} ms", flush=True)
            await asyncio.sleep(delay_ms / 1000)
        try:
            instances = get_predict_input(payload)
            result = self._model.predict(instances)
            return get_predict_response(payload, result, self.name)
        except Exception as e:  # noqa: BLE001 - reported to the client as KServe does
            raise InferenceError(str(e))


DELAY_HEADER = "x-e2e-delay-ms"


def _delay_ms(headers: Optional[Dict[str, str]]) -> int:
    if not headers:
        return 0
    for key, value in headers.items():
        if key.lower() == DELAY_HEADER:
            return max(0, min(int(value), 30_000))
    return 0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True, help="A local directory holding model.joblib.")
    parser.add_argument("--fail-percent", type=int, default=0, choices=range(0, 101), metavar="0..100",
                        help="Test-only: answer HTTP 500 for this share of predictions.")
    parser.add_argument("--delay-ms", type=int, default=0, help="Test-only: add this many ms to every prediction.")
    args, _ = parser.parse_known_args(argv)
    grpc_wanted = "--grpc_port" in (argv if argv is not None else sys.argv[1:])

    _bind_loopback_only()
    model = SKLearnIrisModel(args.model_name, args.model_dir, fail_percent=args.fail_percent, delay_ms=args.delay_ms)
    model.load()
    ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=grpc_wanted,
        workers=1,
        grace_period=5,
    ).start([model])


if __name__ == "__main__":
    main()
