"""The real kubectl against Sluice's admin API, in front of two real KServe sklearn-iris servers.

The seed's commands run verbatim (`kubectl apply -n kserve-test -f - <<EOF`, `kubectl get isvc sklearn-iris`, the
`-ojsonpath=... | jq` of step 5, `kubectl get pods -l ...`) through bash, with no flag added: the user's kubeconfig
is the one `sluice kubeconfig` prints (namespace kserve-test), as the README tells a user to do. Every output is
compared with the seed's. Then the verbs a kubectl user relies on, each with the words a real API server answers
with, and the admin API's authentication (the refusal of a tokenless non-loopback address, a 401 on one).

kubectl is the one on PATH (1.32 here) and, for the seed's commands, the 1.27 build shipped beside it. Every kubectl
call is bounded: --request-timeout where a flag may be added, a subprocess timeout always.
"""

import json
import os
import pathlib
import queue
import re
import shutil
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional

import pytest
import requests

if not os.environ.get("SLUICE_BIN"):
    pytest.skip("SLUICE_BIN is not set: point it at the release build "
                "($(swift build -c release --show-bin-path)/sluice), as `make test-e2e` does",
                allow_module_level=True)

from conftest import (KUBECTL_1_27, LOOPBACK, MODEL_NAME, NAMESPACE, REV1, REV2, SERVICE_HOST, STORAGE_URI_MODEL_1,
                      STORAGE_URI_MODEL_2, ControlSluice, control_config, kubectl_env, spawn, tail_logs, wait_until, _kill,
                      write_kubeconfig)
from test_rollout_workflow import REV3, STEP5_PREDICTOR, assert_only, assert_split, fire
from test_tls_gateway import make_ca_and_leaf

pytestmark = pytest.mark.timeout(240)

KUBECTL_TIMEOUT = 30
ROLLOUT_TIMEOUT = 60.0
ISVC = f"inferenceservice.serving.kserve.io/{MODEL_NAME}"
RESOURCE = "inferenceservices.serving.kserve.io"
TABLE_COLUMNS = ["NAME", "URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION", "LATESTREADYREVISION", "AGE"]
POD_COLUMNS = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]

# The seed's manifests, as its heredocs have them (the create step is KServe's "First InferenceService").
CREATE = f'''apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "sklearn-iris"
spec:
  predictor:
    model:
      modelFormat:
        name: sklearn
      storageUri: "{STORAGE_URI_MODEL_1}"
'''
CANARY = f'''apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "sklearn-iris"
spec:
  predictor:
    canaryTrafficPercent: 10  # <= NB
    model:
      modelFormat:
        name: sklearn
      storageUri: "{STORAGE_URI_MODEL_2}"
'''
PROMOTE = CANARY.replace("    canaryTrafficPercent: 10  # <= NB\n", "")
ROLLBACK = CANARY.replace("canaryTrafficPercent: 10", "canaryTrafficPercent: 0")
TAG = f'''apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "sklearn-iris"
  annotations:
    serving.kserve.io/enable-tag-routing: "true"
spec:
  predictor:
    canaryTrafficPercent: 10
    model:
      modelFormat:
        name: sklearn
      storageUri: "{STORAGE_URI_MODEL_2}"
'''


# ---------------------------------------------------------------------------------------------- running kubectl

class Kubectl:
    """One user's kubectl: the binary, a HOME of its own and the kubeconfig `sluice kubeconfig` wrote."""

    def __init__(self, sluice: ControlSluice, home: pathlib.Path, binary: str = "kubectl"):
        home.mkdir(parents=True, exist_ok=True)
        self.sluice = sluice
        self.home = home
        self.kubeconfig = sluice.kubeconfig(home / "sluice.kubeconfig", namespace=NAMESPACE)
        self.env = kubectl_env(home, self.kubeconfig, binary)

    def shell(self, command: str, timeout: float = KUBECTL_TIMEOUT) -> subprocess.CompletedProcess:
        """COMMAND exactly as a user types it, run by bash (heredocs, pipes to jq)."""
        return subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=self.env, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=self.home)

    def run(self, *args: str, stdin: Optional[str] = None, timeout: float = KUBECTL_TIMEOUT) -> subprocess.CompletedProcess:
        """`kubectl --request-timeout=10s ARGS` (STDIN on its standard input)."""
        return subprocess.run(["kubectl", "--request-timeout=10s", *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, input=stdin if stdin is not None else "", cwd=self.home)

    def get_json(self, name: str = MODEL_NAME) -> dict:
        r = self.run("get", "isvc", name, "-n", NAMESPACE, "-o", "json")
        assert r.returncode == 0, show(r)
        return json.loads(r.stdout)


def show(r: subprocess.CompletedProcess) -> str:
    args = r.args if isinstance(r.args, str) else " ".join(r.args)
    return f"`{args}` exited {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"


def heredoc(manifest: str) -> str:
    return f"kubectl apply -n kserve-test -f - <<EOF\n{manifest}EOF\n"


def table(stdout: str, columns: List[str]) -> List[Dict[str, str]]:
    """A kubectl table as one dict of column → value per row, cells cut at the header's offsets (blank cells kept)."""
    lines = stdout.rstrip("\n").split("\n")
    header, rows = lines[0], lines[1:]
    assert header.split() == columns, f"columns {header.split()}, expected {columns}\n{stdout}"
    starts = [header.index(" " + n) + 1 if i else 0 for i, n in enumerate(columns)]
    out = []
    for row in rows:
        cells = {}
        for i, n in enumerate(columns):
            end = starts[i + 1] if i + 1 < len(columns) else len(row)
            assert i + 1 == len(columns) or row[end - 1:end] in (" ", ""), f"column {n} overflows in\n{stdout}"
            cells[n] = row[starts[i]:end].strip()
        out.append(cells)
    return out


def isvc_row(prev: str, latest: str, prev_rolled_out: str, latest_ready: str) -> Dict[str, str]:
    """The seed's `kubectl get isvc sklearn-iris` row, AGE left out."""
    return {"NAME": MODEL_NAME, "URL": f"http://{SERVICE_HOST}", "READY": "True", "PREV": prev, "LATEST": latest,
            "PREVROLLEDOUTREVISION": prev_rolled_out, "LATESTREADYREVISION": latest_ready}


def eventually(run: Callable[[], subprocess.CompletedProcess], check: Callable[[subprocess.CompletedProcess], bool],
               what: str, timeout: float = ROLLOUT_TIMEOUT) -> subprocess.CompletedProcess:
    """Runs RUN until CHECK holds of its result (a rollout takes as long as a revision takes to be ready); fails
    after TIMEOUT with the last output."""
    deadline = time.monotonic() + timeout
    while True:
        r = run()
        try:
            if check(r):
                return r
        except (AssertionError, ValueError, IndexError, KeyError):
            pass
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not so after {timeout}s; last output:\n{show(r)}")
        time.sleep(0.2)


def expect_get_isvc(k: Kubectl, row: Dict[str, str]) -> None:
    """The seed's `kubectl get isvc sklearn-iris` (namespace from the kubeconfig) prints ROW once the rollout is done."""
    def check(r):
        rows = table(r.stdout, TABLE_COLUMNS)
        return r.returncode == 0 and len(rows) == 1 and {c: v for c, v in rows[0].items() if c != "AGE"} == row \
            and re.fullmatch(r"\d+[smhd]\S*", rows[0]["AGE"]) is not None
    eventually(lambda: k.shell("kubectl get isvc sklearn-iris"), check, f"get isvc shows {row}")


def pods(k: Kubectl) -> Dict[str, Dict[str, str]]:
    """The seed's `kubectl get pods -l serving.kserve.io/inferenceservice=sklearn-iris`, rows by revision."""
    r = k.shell("kubectl get pods -l serving.kserve.io/inferenceservice=sklearn-iris")
    assert r.returncode == 0, show(r)
    out = {}
    for row in table(r.stdout, POD_COLUMNS):
        # KServe's pods are named <revision>-deployment-<replicaset hash>-<pod suffix>.
        m = re.fullmatch(rf"({re.escape(MODEL_NAME)}-predictor-default-\d{{5}})-deployment-[a-z0-9]+-[a-z0-9]{{5}}", row["NAME"])
        assert m, f"pod name {row['NAME']!r} is not KServe's <revision>-deployment-<hash>-<suffix>\n{r.stdout}"
        out[m.group(1)] = row
    return out


def running(row: Dict[str, str]) -> bool:
    return row["READY"] == "2/2" and row["STATUS"] == "Running" and row["RESTARTS"] == "0"


@pytest.fixture(params=["kubectl", KUBECTL_1_27], ids=["kubectl-on-PATH", "kubectl-1.27"])
def kubectl_binary(request) -> str:
    if request.param != "kubectl" and not os.access(request.param, os.X_OK):
        pytest.skip(f"{request.param} is not installed here (the google-cloud-sdk kubectl package ships it)")
    if request.param == "kubectl" and shutil.which("kubectl") is None:
        pytest.fail("no kubectl on PATH: `make test` installs the kubectl package")
    return request.param


@pytest.fixture
def kube(start_control_sluice, tmp_path) -> Kubectl:
    return Kubectl(start_control_sluice(), tmp_path / "user")


# ---------------------------------------------------------------------------------------------- the seed, verbatim

def test_seed_commands_verbatim(start_control_sluice, kubectl_binary, trained, tmp_path):
    sluice = start_control_sluice()
    k = Kubectl(sluice, tmp_path / "user", kubectl_binary)

    # 1. Create: 00001 gets 100 %; its pod is running.
    r = k.shell(heredoc(CREATE))
    assert r.returncode == 0 and r.stdout == f"{ISVC} created\n", show(r)
    expect_get_isvc(k, isvc_row("", "100", "", REV1))
    assert set(pods(k)) == {REV1} and running(pods(k)[REV1]), pods(k)
    assert_only(fire(sluice, trained, 100), REV1)

    # 2. Canary: 00002 takes 10 % once ready.
    r = k.shell(heredoc(CANARY))
    assert r.returncode == 0 and r.stdout == f"{ISVC} configured\n", show(r)
    expect_get_isvc(k, isvc_row("90", "10", REV1, REV2))
    assert_split(fire(sluice, trained, 1000), REV1, REV2, 10)

    # 3. Promote: 00002 has everything; 00001's pod is on its way out (Terminating), or gone.
    r = k.shell(heredoc(PROMOTE))
    assert r.returncode == 0 and r.stdout == f"{ISVC} configured\n", show(r)
    expect_get_isvc(k, isvc_row("", "100", "", REV2))
    listed = pods(k)
    assert REV2 in listed and running(listed[REV2]), listed
    assert set(listed) <= {REV1, REV2} and (REV1 not in listed or listed[REV1]["STATUS"] == "Terminating"), listed
    assert_only(fire(sluice, trained, 100), REV2)

    # 4. Rollback / pin with 0: everything back on 00001.
    r = k.shell(heredoc(ROLLBACK))
    assert r.returncode == 0 and r.stdout == f"{ISVC} configured\n", show(r)
    expect_get_isvc(k, isvc_row("100", "0", REV1, REV2))
    assert_only(fire(sluice, trained, 100), REV1)

    # 5. Tag routing: the annotation makes 00003; the predictor's status is the seed's JSON.
    r = k.shell(heredoc(TAG))
    assert r.returncode == 0 and r.stdout == f"{ISVC} configured\n", show(r)
    expect_get_isvc(k, isvc_row("90", "10", REV1, REV3))
    r = k.shell('kubectl get isvc sklearn-iris -ojsonpath="{.status.components.predictor}"  | jq')
    assert r.returncode == 0, show(r)
    predictor = json.loads(r.stdout)
    # Keys and values exactly as the seed's; the order of the two traffic entries does not matter (as in
    # test_rollout_workflow).
    got = dict(predictor, traffic=sorted(predictor.get("traffic", []), key=lambda t: t.get("tag", "")))
    want = dict(STEP5_PREDICTOR, traffic=sorted(STEP5_PREDICTOR["traffic"], key=lambda t: t["tag"]))
    assert got == want, r.stdout

    # kubectl's own bookkeeping never makes a revision: the same manifest again is unchanged, and a change of the
    # percent alone (10 → 50) moves traffic on 00003 with no 00004 (the last-applied-configuration annotation that
    # kubectl rewrites on each apply is not part of the revision template).
    r = k.shell(heredoc(TAG))
    assert r.returncode == 0 and r.stdout == f"{ISVC} unchanged\n", show(r)
    r = k.shell(heredoc(TAG.replace("canaryTrafficPercent: 10", "canaryTrafficPercent: 50")))
    assert r.returncode == 0 and r.stdout == f"{ISVC} configured\n", show(r)
    expect_get_isvc(k, isvc_row("50", "50", REV1, REV3))
    assert k.get_json()["status"]["components"]["predictor"]["latestCreatedRevision"] == REV3


# ---------------------------------------------------------------------------------------------- the verbs

def manifest_file(k: Kubectl, name: str, text: str) -> pathlib.Path:
    path = k.home / name
    path.write_text(text)
    return path


def test_create_twice_replace_stale_patch_watch_dry_run_delete(kube):
    k = kube
    create = manifest_file(k, "create.yaml", CREATE)

    r = k.run("create", "-n", NAMESPACE, "-f", str(create))
    assert r.returncode == 0 and r.stdout == f"{ISVC} created\n", show(r)
    r = k.run("create", "-n", NAMESPACE, "-f", str(create))
    assert r.returncode == 1, show(r)
    assert r.stderr == (f'Error from server (AlreadyExists): error when creating "{create}": '
                        f'{RESOURCE} "{MODEL_NAME}" already exists\n'), show(r)

    r = k.run("wait", "--for=condition=Ready", f"isvc/{MODEL_NAME}", "-n", NAMESPACE, "--timeout=60s", timeout=90)
    assert r.returncode == 0 and r.stdout == f"{ISVC} condition met\n", show(r)
    before = k.get_json()
    assert before["metadata"]["uid"] and before["metadata"]["resourceVersion"], before["metadata"]

    # merge patch: the percent is stored, the object's resourceVersion moves, the uid stays.
    r = k.run("patch", "isvc", MODEL_NAME, "-n", NAMESPACE, "--type", "merge",
              "-p", '{"spec":{"predictor":{"canaryTrafficPercent":20}}}')
    assert r.returncode == 0 and r.stdout == f"{ISVC} patched\n", show(r)
    after = k.get_json()
    assert after["spec"]["predictor"]["canaryTrafficPercent"] == 20, after["spec"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]

    # replace with the resourceVersion read before the patch: the API server's optimistic-concurrency conflict.
    stale = dict(before)
    stale["spec"] = dict(before["spec"], predictor=dict(before["spec"]["predictor"], canaryTrafficPercent=40))
    stale.pop("status", None)
    path = manifest_file(k, "stale.json", json.dumps(stale))
    r = k.run("replace", "-f", str(path))
    assert r.returncode == 1, show(r)
    assert r.stderr == (f'Error from server (Conflict): error when replacing "{path}": Operation cannot be fulfilled on '
                        f'{RESOURCE} "{MODEL_NAME}": the object has been modified; please apply your changes to the '
                        'latest version and try again\n'), show(r)
    assert k.get_json()["spec"]["predictor"]["canaryTrafficPercent"] == 20

    # JSON patch: a canary of model-2 at 30 %, a rollout like any other.
    r = k.run("patch", "isvc", MODEL_NAME, "-n", NAMESPACE, "--type", "json", "-p", json.dumps([
        {"op": "replace", "path": "/spec/predictor/canaryTrafficPercent", "value": 30},
        {"op": "replace", "path": "/spec/predictor/model/storageUri", "value": STORAGE_URI_MODEL_2}]))
    assert r.returncode == 0 and r.stdout == f"{ISVC} patched\n", show(r)
    expect_get_isvc(k, isvc_row("70", "30", REV1, REV2))

    # get -w: the table, then a row for each change; a patch to 50 shows up as it happens.
    watcher = subprocess.Popen(["kubectl", "get", "isvc", MODEL_NAME, "-n", NAMESPACE, "-w", "--request-timeout=60s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=k.env,
                               stdin=subprocess.DEVNULL)
    lines: "queue.Queue[str]" = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(l) for l in watcher.stdout], daemon=True)
    reader.start()
    try:
        def next_line(what: str, timeout: float = 20.0) -> str:
            try:
                return lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"get -w printed no {what} within {timeout}s")
        assert next_line("header").split() == TABLE_COLUMNS
        assert next_line("first row").split()[:7] == [MODEL_NAME, f"http://{SERVICE_HOST}", "True", "70", "30", REV1, REV2]
        r = k.run("patch", "isvc", MODEL_NAME, "-n", NAMESPACE, "--type", "merge",
                  "-p", '{"spec":{"predictor":{"canaryTrafficPercent":50}}}')
        assert r.returncode == 0, show(r)
        deadline = time.monotonic() + 30
        seen = []
        while True:
            line = next_line("row with the canary at 50 %", max(0.1, deadline - time.monotonic()))
            seen.append(line)
            if line.split()[:7] == [MODEL_NAME, f"http://{SERVICE_HOST}", "True", "50", "50", REV1, REV2]:
                break
            assert time.monotonic() < deadline, seen
    finally:
        _stop(watcher)
        reader.join(timeout=10)

    # --dry-run=server: the server answers the would-be object; nothing happens. (kubectl patch prints no
    # "(server dry run)" suffix, whatever the server: its printer lacks the dry-run decoration delete and apply have.)
    r = k.run("patch", "isvc", MODEL_NAME, "-n", NAMESPACE, "--type", "merge", "--dry-run=server",
              "-p", '{"spec":{"predictor":{"canaryTrafficPercent":90}}}', "-o", "jsonpath={.spec.predictor.canaryTrafficPercent}")
    assert r.returncode == 0 and r.stdout == "90", show(r)
    r = k.run("delete", "isvc", MODEL_NAME, "-n", NAMESPACE, "--dry-run=server")
    assert r.returncode == 0 and r.stdout == f'{ISVC.split("/")[0]} "{MODEL_NAME}" deleted (server dry run)\n', show(r)
    expect_get_isvc(k, isvc_row("50", "50", REV1, REV2))
    assert k.get_json()["spec"]["predictor"]["canaryTrafficPercent"] == 50

    r = k.run("delete", "isvc", MODEL_NAME, "-n", NAMESPACE)
    assert r.returncode == 0 and r.stdout == f'{ISVC.split("/")[0]} "{MODEL_NAME}" deleted\n', show(r)
    r = k.run("get", "isvc", MODEL_NAME, "-n", NAMESPACE)
    assert r.returncode == 1, show(r)
    assert r.stderr == f'Error from server (NotFound): {RESOURCE} "{MODEL_NAME}" not found\n', show(r)
    # No route is left: the service's host is unknown to the gateway again.
    r = requests.post(k.sluice.url + f"/v1/models/{MODEL_NAME}:predict", json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
                      headers={"Host": SERVICE_HOST}, timeout=10)
    assert r.status_code == 404, r.text


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_server_side_apply_with_field_managers_and_conflicts(kube):
    k = kube
    ssa = ["apply", "--server-side", "-n", NAMESPACE, "-f", "-"]
    r = k.run(*ssa, stdin=CREATE)
    assert r.returncode == 0 and r.stdout == f"{ISVC} serverside-applied\n", show(r)
    r = k.run("wait", "--for=condition=Ready", f"isvc/{MODEL_NAME}", "-n", NAMESPACE, "--timeout=60s", timeout=90)
    assert r.returncode == 0, show(r)
    r = k.run(*ssa, stdin=CANARY)
    assert r.returncode == 0 and r.stdout == f"{ISVC} serverside-applied\n", show(r)
    expect_get_isvc(k, isvc_row("90", "10", REV1, REV2))

    r = k.run("get", "isvc", MODEL_NAME, "-n", NAMESPACE, "-o", "json", "--show-managed-fields")
    assert r.returncode == 0, show(r)
    managers = {(m["manager"], m["operation"]) for m in json.loads(r.stdout)["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers, managers

    # Another manager takes the percent; applying a different value is then a conflict kubectl explains ...
    r = k.run("patch", "isvc", MODEL_NAME, "-n", NAMESPACE, "--type", "merge",
              "-p", '{"spec":{"predictor":{"canaryTrafficPercent":20}}}')
    assert r.returncode == 0, show(r)
    r = k.run(*ssa, stdin=CANARY.replace("canaryTrafficPercent: 10", "canaryTrafficPercent: 30"))
    assert r.returncode == 1, show(r)
    assert r.stderr.startswith('error: Apply failed with 1 conflict: conflict with "kubectl-patch" using '
                               'serving.kserve.io/v1beta1: .spec.predictor.canaryTrafficPercent\n'), show(r)
    assert "--force-conflicts" in r.stderr, show(r)
    assert k.get_json()["spec"]["predictor"]["canaryTrafficPercent"] == 20
    # ... and --force-conflicts takes it over.
    r = k.run(*ssa, "--force-conflicts", stdin=CANARY.replace("canaryTrafficPercent: 10", "canaryTrafficPercent: 30"))
    assert r.returncode == 0 and r.stdout == f"{ISVC} serverside-applied\n", show(r)
    expect_get_isvc(k, isvc_row("70", "30", REV1, REV2))


def test_kubernetes_rejects_what_kubernetes_rejects(kube):
    k = kube
    r = k.shell(heredoc(CREATE))
    assert r.returncode == 0, show(r)
    expect_get_isvc(k, isvc_row("", "100", "", REV1))

    # The typo that once made a canary a full rollout: refused with the field named, nothing changes.
    r = k.shell(heredoc(CANARY.replace("canaryTrafficPercent", "canaryTrafficPercnt")))
    assert r.returncode == 1, show(r)
    assert re.search(r'unknown field "(spec\.predictor\.)?canaryTrafficPercnt"', r.stderr), show(r)
    assert r.stdout == "", show(r)
    predictor = k.get_json()["status"]["components"]["predictor"]
    assert predictor["latestCreatedRevision"] == REV1, predictor
    expect_get_isvc(k, isvc_row("", "100", "", REV1))

    # A kind or a version the API does not serve: kubectl finds no mapping in discovery.
    r = k.shell(heredoc(CREATE.replace('kind: "InferenceService"', 'kind: "InferenceServic"')))
    assert r.returncode == 1, show(r)
    assert 'no matches for kind "InferenceServic" in version "serving.kserve.io/v1beta1"' in r.stderr, show(r)
    r = k.shell(heredoc(CREATE.replace("serving.kserve.io/v1beta1", "serving.kserve.io/v1beta2")))
    assert r.returncode == 1, show(r)
    assert 'no matches for kind "InferenceService" in version "serving.kserve.io/v1beta2"' in r.stderr, show(r)

    # explain reads the OpenAPI document.
    r = k.run("explain", "isvc.spec.predictor")
    assert r.returncode == 0, show(r)
    assert re.search(r"^KIND:\s+InferenceService$", r.stdout, re.M), show(r)
    assert re.search(r"^VERSION:\s+v1beta1$", r.stdout, re.M), show(r)
    assert re.search(r"^\s+canaryTrafficPercent\s+<integer>", r.stdout, re.M), show(r)
    assert re.search(r"^\s+model\s+<Object>", r.stdout, re.M), show(r)


# ---------------------------------------------------------------------------------------------- authentication

def _dummy_models() -> Dict[str, List[str]]:
    return {STORAGE_URI_MODEL_1: [f"{LOOPBACK}:1"]}


def test_non_loopback_admin_without_token_refused_before_anything_is_bound(free_ports, tmp_path):
    binary = os.environ["SLUICE_BIN"]
    listen, admin, config_admin = free_ports(3)
    state = tmp_path / "state"
    config = tmp_path / "sluice.yaml"
    config.write_text(control_config(listen, config_admin, state, _dummy_models()))
    r = subprocess.run([binary, "serve", "--config", str(config), "--admin", f"0.0.0.0:{admin}"], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, show(r)
    events = [json.loads(l) for l in r.stderr.splitlines() if l.startswith("{")]
    assert [e["event"] for e in events] == ["gateway.start_failed"], r.stderr
    assert events[0]["message"].startswith(f"admin address 0.0.0.0:{admin} is not a loopback address (127.0.0.0/8 or ::1)"), r.stderr
    assert "token" in events[0]["message"], r.stderr
    # Nothing was started: no state directory was created or locked (that comes before the listeners).
    assert not state.exists()


NETNS_ADDRESS = "192.0.2.10"  # TEST-NET-1 (RFC 5737), on a dummy interface in a namespace of the test's own

NETNS_SCRIPT = r'''
set -u
ip link set lo up
if ! ip link add sluice0 type dummy 2>/dev/null && ! ip link add sluice0 type veth peer name sluice1 2>/tmp/sluice-netns-ip.$$; then
  echo "=== no-interface"; cat /tmp/sluice-netns-ip.$$; rm -f /tmp/sluice-netns-ip.$$; exit 4
fi
ip addr add "$ADDRESS/24" dev sluice0
ip link set sluice0 up
ip link set sluice1 up 2>/dev/null || true
"$SLUICE_BIN" serve --config "$CONFIG" --admin "$ADDRESS:15000" --admin-token-file "$TOKEN_FILE" \
  --admin-tls-cert "$CERTS/admin.crt" --admin-tls-key "$CERTS/admin.key" --workers 1 >"$LOGS.out" 2>"$LOGS.err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
up=""
for i in $(seq 1 150); do
  if curl -s -o /dev/null --max-time 1 --cacert "$CERTS/ca.crt" "https://$ADDRESS:15000/healthz"; then up=1; break; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
[ -n "$up" ] || { echo "=== not-up"; exit 3; }
LIST=/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices
echo "=== curl"; curl -s -i --max-time 5 --cacert "$CERTS/ca.crt" "https://$ADDRESS:15000$LIST"
echo "=== kubectl-wrong-token"; KUBECONFIG=/dev/null kubectl --server "https://$ADDRESS:15000" --certificate-authority "$CERTS/ca.crt" --token wrong \
  --request-timeout=10s get --raw "$LIST" 2>&1; echo "rc=$?"
echo "=== kubectl-kubeconfig"; KUBECONFIG="$KUBECONFIG_FILE" kubectl --request-timeout=10s get --raw "$LIST" 2>&1; echo "rc=$?"
echo "=== end"
'''


def test_request_without_token_refused_with_401_on_a_non_loopback_admin_address(free_ports, tmp_path):
    """The admin API bound to 192.0.2.10 (every 127.x is loopback, so the test makes a network namespace with an
    interface of its own), over TLS: without the token, or with a wrong one, the API server's 401; with the kubeconfig
    of `sluice kubeconfig --token-file --certificate-authority`, kubectl is answered. (kubectl sends a kubeconfig's
    token only over https.)"""
    binary = os.environ["SLUICE_BIN"]
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare(1) and ip(8) to make a network namespace")
    # As root a plain new network namespace; otherwise a user namespace maps us to root inside it.
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    probe = subprocess.run(unshare + ["true"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"network namespaces are not allowed here: {probe.stderr.strip()}")
    token_file = tmp_path / "token"
    token_file.write_text("e2e-admin-token-7f3a\n")
    listen, config_admin = free_ports(2)
    config = tmp_path / "sluice.yaml"
    config.write_text(control_config(listen, config_admin, tmp_path / "state", _dummy_models()))
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca_and_leaf(certs, "admin", san=f"IP:{NETNS_ADDRESS}")
    kubeconfig = write_kubeconfig(binary, tmp_path / "kubeconfig", f"{NETNS_ADDRESS}:15000", "default", token_file,
                                  certificate_authority=certs / "ca.crt")
    assert f"server: \"https://{NETNS_ADDRESS}:15000\"" in kubeconfig.read_text()
    env = kubectl_env(tmp_path / "home", kubeconfig)
    env.update(SLUICE_BIN=binary, CONFIG=str(config), ADDRESS=NETNS_ADDRESS, TOKEN_FILE=str(token_file),
               LOGS=str(tmp_path / "sluice-netns"), KUBECONFIG_FILE=str(kubeconfig), CERTS=str(certs))
    r = subprocess.run(unshare + ["bash", "-c", NETNS_SCRIPT], capture_output=True, text=True, env=env, timeout=120,
                       stdin=subprocess.DEVNULL)
    if "=== no-interface" in r.stdout:
        pytest.skip(f"cannot make a dummy or veth interface in the network namespace: {r.stdout.split('=== no-interface')[1].strip()}")
    assert "=== end" in r.stdout, show(r) + tail_logs(tmp_path / "sluice-netns")
    sections = dict(part.split("\n", 1) for part in r.stdout.split("=== ")[1:])

    head, _, body = sections["curl"].replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 401"), sections["curl"]
    assert re.search(r'^WWW-Authenticate: Bearer realm="sluice"$', head, re.M | re.I), head
    assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}, body
    # (kubectl with no credentials at all prompts for a username before it sends anything: curl showed that case.)
    assert sections["kubectl-wrong-token"] == "error: You must be logged in to the server (Unauthorized)\nrc=1\n", \
        sections["kubectl-wrong-token"]
    out, _, rc = sections["kubectl-kubeconfig"].rpartition("rc=")
    assert rc.strip() == "0", sections["kubectl-kubeconfig"]
    assert json.loads(out)["kind"] == "InferenceServiceList", out


def test_kubeconfig_with_tls_and_token_needs_no_flags(free_ports, tmp_path):
    """`sluice serve --admin-token-file --admin-tls-cert/--admin-tls-key` and `sluice kubeconfig --token-file
    --certificate-authority`: kubectl is answered over https with the token and no flag; the same port refuses
    plain HTTP (the token never travels in clear), and curl without the token gets the API server's 401."""
    binary = os.environ["SLUICE_BIN"]
    listen, admin = free_ports(2)
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca_and_leaf(certs, "admin", san=f"IP:{LOOPBACK}")
    token_file = tmp_path / "token"
    token_file.write_text("loopback-admin-token-91c2\n")
    config = tmp_path / "sluice.yaml"
    config.write_text(control_config(listen, admin, tmp_path / "state", _dummy_models()))
    logs = tmp_path / "sluice-tls"
    proc = spawn([binary, "serve", "--config", str(config), "--workers", "1", "--admin-token-file", str(token_file),
                  "--admin-tls-cert", str(certs / "admin.crt"), "--admin-tls-key", str(certs / "admin.key")], logs)
    try:
        base = f"https://{LOOPBACK}:{admin}"

        def up() -> bool:
            try:
                return requests.get(base + "/healthz", verify=str(certs / "ca.crt"), timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_until(up, 15, f"sluice's admin API on {base}", proc=proc, logs=logs)

        kubeconfig = write_kubeconfig(binary, tmp_path / "kubeconfig", f"{LOOPBACK}:{admin}", NAMESPACE, token_file,
                                      certificate_authority=certs / "ca.crt")
        env = kubectl_env(tmp_path / "home", kubeconfig)
        list_path = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices"
        r = subprocess.run(["kubectl", "--request-timeout=10s", "get", "--raw", list_path], capture_output=True, text=True,
                           env=env, timeout=KUBECTL_TIMEOUT, stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and json.loads(r.stdout)["kind"] == "InferenceServiceList", show(r)

        r = requests.get(base + list_path, verify=str(certs / "ca.crt"), timeout=10)
        assert r.status_code == 401 and r.json()["reason"] == "Unauthorized", r.text
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="sluice"'
        with pytest.raises(requests.RequestException):
            requests.get(f"http://{LOOPBACK}:{admin}{list_path}", headers={"Authorization": "Bearer x"}, timeout=5)
        assert proc.poll() is None, tail_logs(logs)
    finally:
        _kill(proc)
