"""The Python `kubernetes` client (PyPI), a second real Kubernetes client, against Sluice's admin API: the
CustomObjectsApi lists, creates, gets, patches and deletes InferenceServices, and a watch sees each change, with the
kubeconfig `sluice kubeconfig` prints — as a user's script would talk to a cluster with KServe.
"""

import os
import queue
import threading
import time
from typing import Callable

import pytest

if not os.environ.get("SLUICE_BIN"):
    pytest.skip("SLUICE_BIN is not set: point it at the release build "
                "($(swift build -c release --show-bin-path)/sluice), as `make test-e2e` does",
                allow_module_level=True)

import kubernetes  # noqa: E402

from conftest import MODEL_NAME, NAMESPACE, REV1, REV2, STORAGE_URI_MODEL_1, STORAGE_URI_MODEL_2  # noqa: E402

pytestmark = pytest.mark.timeout(180)

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
REQUEST_TIMEOUT = 10
ROLLOUT_TIMEOUT = 60.0

MANIFEST = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "InferenceService",
    "metadata": {"name": MODEL_NAME},
    "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": STORAGE_URI_MODEL_1}}},
}


def eventually(read: Callable[[], dict], check: Callable[[dict], bool], what: str, timeout: float = ROLLOUT_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if check(got):
            return got
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not so after {timeout}s; last: {got}")
        time.sleep(0.2)


def is_ready(obj: dict) -> bool:
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def traffic(obj: dict) -> dict:
    """revisionName → percent of `.status.components.predictor.traffic`."""
    entries = obj.get("status", {}).get("components", {}).get("predictor", {}).get("traffic", [])
    return {t.get("revisionName"): t.get("percent") for t in entries}


def test_custom_objects_api_list_create_get_patch_delete_and_watch(start_control_sluice, tmp_path):
    sluice = start_control_sluice()
    kubeconfig = sluice.kubeconfig(tmp_path / "sluice.kubeconfig", namespace=NAMESPACE)
    api_client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    api = kubernetes.client.CustomObjectsApi(api_client)

    listed = api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _request_timeout=REQUEST_TIMEOUT)
    assert listed["kind"] == "InferenceServiceList" and listed["items"] == [], listed
    since = listed["metadata"]["resourceVersion"]
    assert since, listed["metadata"]

    # The watch starts from the list's resourceVersion, as a controller's informer does: it misses nothing after it.
    events: "queue.Queue[tuple]" = queue.Queue()
    watcher = kubernetes.watch.Watch()
    failure: list = []
    stopping = threading.Event()
    seen_by_watch: list = []

    def watch() -> None:
        try:
            for event in watcher.stream(api.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL,
                                        resource_version=since, timeout_seconds=60, _request_timeout=70):
                seen_by_watch.append((event["type"], event["object"].get("metadata", {}).get("resourceVersion")))
                events.put((event["type"], event["object"]))
        except Exception as e:
            # Watch.stop() shuts the client's own socket down to wake this read: what breaks after it is ours.
            # Anything before it is handed to the test thread, which fails with it.
            if not stopping.is_set():
                failure.append(f"{e!r} after the events {[t for t, _ in seen_by_watch]}")

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()

    def next_event(kind: str, check: Callable[[dict], bool] = lambda o: True, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                event_type, obj = events.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append((event_type, obj.get("metadata", {}).get("resourceVersion")))
            if event_type == kind and obj["metadata"]["name"] == MODEL_NAME and check(obj):
                return obj
            assert event_type in ("ADDED", "MODIFIED", "DELETED"), (event_type, obj)
        pytest.fail(f"no {kind} event within {timeout}s; saw {seen}; watch failure: {failure}")

    try:
        created = api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MANIFEST,
                                                      _request_timeout=REQUEST_TIMEOUT)
        assert created["kind"] == "InferenceService" and created["metadata"]["name"] == MODEL_NAME, created
        assert created["metadata"]["namespace"] == NAMESPACE and created["metadata"]["uid"], created["metadata"]
        added = next_event("ADDED")
        assert added["metadata"]["uid"] == created["metadata"]["uid"]

        # Creating it again is the API server's 409 AlreadyExists.
        with pytest.raises(kubernetes.client.exceptions.ApiException) as again:
            api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MANIFEST, _request_timeout=REQUEST_TIMEOUT)
        assert again.value.status == 409 and '"reason":"AlreadyExists"' in again.value.body.replace(" ", ""), again.value.body

        ready = eventually(lambda: api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MODEL_NAME,
                                                                    _request_timeout=REQUEST_TIMEOUT),
                           is_ready, "the InferenceService is Ready")
        assert ready["metadata"]["uid"] == created["metadata"]["uid"]
        assert traffic(ready) == {REV1: 100}, ready["status"]

        # A merge patch (the client's default for a dict): a canary of model-2 at 10 %.
        patched = api.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, MODEL_NAME,
            {"spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": STORAGE_URI_MODEL_2}}}},
            _request_timeout=REQUEST_TIMEOUT)
        assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 10, patched["spec"]
        assert patched["spec"]["predictor"]["model"] == {"modelFormat": {"name": "sklearn"}, "storageUri": STORAGE_URI_MODEL_2}
        assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
        next_event("MODIFIED", lambda o: o["spec"]["predictor"].get("canaryTrafficPercent") == 10)
        # The watch goes on reporting the rollout until the canary has its share.
        next_event("MODIFIED", lambda o: traffic(o) == {REV1: 90, REV2: 10}, timeout=ROLLOUT_TIMEOUT)

        deleted = api.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MODEL_NAME,
                                                      _request_timeout=REQUEST_TIMEOUT)
        assert deleted.get("status") == "Success" or deleted.get("metadata", {}).get("name") == MODEL_NAME, deleted
        next_event("DELETED")
        with pytest.raises(kubernetes.client.exceptions.ApiException) as gone:
            api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MODEL_NAME, _request_timeout=REQUEST_TIMEOUT)
        assert gone.value.status == 404 and '"reason":"NotFound"' in gone.value.body.replace(" ", ""), gone.value.body
        listed = api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _request_timeout=REQUEST_TIMEOUT)
        assert listed["items"] == [], listed
        stopped_after = list(seen_by_watch)
    finally:
        stopping.set()
        watcher.stop()
        thread.join(timeout=75)
        api_client.close()
    assert not thread.is_alive(), "the watch did not end"
    assert not failure, (failure, "stopped after", stopped_after)
