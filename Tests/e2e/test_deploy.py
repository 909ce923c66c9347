"""deploy/: every Kubernetes manifest validated offline against the Kubernetes 1.30 schemas (strict: an unknown field
fails), the properties an operator relies on (replicas, spread, probes on the admin port, drain timing, non-root,
selectors), the ConfigMap's sluice.yaml started on a real `sluice serve`, and the systemd unit (systemd-analyze verify).

    python -m pytest -q Tests/e2e/test_deploy.py     # SLUICE_BIN for the ConfigMap check, as `make test-e2e` sets
"""

import copy
import os
import pathlib
import re
import shutil
import signal
import subprocess
from typing import Dict, List, Tuple

import kubernetes_validate
import pytest
import requests
import urllib3
import yaml

from conftest import LOOPBACK, _kill, spawn, tail_logs, wait_until
from etcd_cluster import EtcdCluster

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
UNIT = REPO / "deploy" / "systemd" / "sluice.service"
KUBERNETES_VERSION = "1.30.0"
NAMESPACE = "sluice-system"


# ---------------------------------------------------------------------------------------------- loading, validating

def manifest_files() -> List[pathlib.Path]:
    """Every manifest under deploy/kubernetes, recursively; kustomization.yaml is kustomize's, not an API object."""
    return sorted(p for p in KUBERNETES_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")


def load_documents(path: pathlib.Path) -> List[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def validate_file(path: pathlib.Path) -> None:
    """Raises kubernetes_validate's error for the first document of PATH that the 1.30 schema refuses (strict)."""
    documents = load_documents(path)
    assert documents, f"{path} holds no object"
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def all_objects() -> Dict[Tuple[str, str], dict]:
    """(kind, name) → object, over every manifest; a duplicate is a mistake (kubectl would apply one over the other)."""
    objects: Dict[Tuple[str, str], dict] = {}
    for path in manifest_files():
        for document in load_documents(path):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, f"{key} defined twice (again in {path})"
            objects[key] = document
    return objects


@pytest.fixture(scope="module")
def objects() -> Dict[Tuple[str, str], dict]:
    return all_objects()


@pytest.fixture(scope="module")
def sluice_yaml(objects) -> dict:
    return yaml.safe_load(objects[("ConfigMap", "sluice-config")]["data"]["sluice.yaml"])


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def duration_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    assert match, f"not a duration: {text}"
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


def sluice_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["sluice"]
    return containers[0]


def container_port(container: dict, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert name in ports, f"container {container['name']} has no port named {name} ({sorted(ports)})"
    return ports[name]


def selects(selector: Dict[str, str], labels: Dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------------------------------------- schemas

@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBERNETES_DIR)))
def test_manifest_is_valid_against_the_kubernetes_1_30_schema_in_strict_mode(path):
    validate_file(path)


def test_the_validation_refuses_a_broken_manifest(tmp_path):
    """The check above has teeth: an unknown field, a wrong type and a missing required field each fail it."""
    deployment = load_documents(KUBERNETES_DIR / "deployment.yaml")[0]
    unknown_field = copy.deepcopy(deployment)
    sluice_container(unknown_field)["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    missing_required = copy.deepcopy(deployment)
    del sluice_container(missing_required)["name"]
    for label, broken in (("unknown-field", unknown_field), ("wrong-type", wrong_type), ("missing-required", missing_required)):
        path = tmp_path / f"{label}.yaml"
        path.write_text(yaml.safe_dump(broken))
        with pytest.raises(kubernetes_validate.ValidationError):
            validate_file(path)


@pytest.mark.parametrize("directory", [KUBERNETES_DIR, KUBERNETES_DIR / "etcd"], ids=["sluice", "etcd"])
def test_the_kustomization_applies_every_manifest_of_its_directory(directory):
    """`kubectl apply -k` applies what the kustomization lists: every file there, none missing."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    present = {p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == present, f"listed but absent: {listed - present}; present but not listed: {present - listed}"


@pytest.mark.parametrize("directory", [KUBERNETES_DIR, KUBERNETES_DIR / "etcd"], ids=["sluice", "etcd"])
def test_kubectl_kustomize_renders_exactly_the_validated_objects(directory):
    """What `kubectl apply -k` would send (kubectl's built-in kustomize, offline) is what the schema check saw."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (make test installs the kubectl package)")
    rendered = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    got = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(rendered.stdout) if d)
    files = [p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"]
    wanted = sorted((d["kind"], d["metadata"]["name"]) for p in files for d in load_documents(p))
    assert got == wanted


def test_every_object_is_in_the_sluice_system_namespace(objects):
    for (kind, name), obj in objects.items():
        if kind == "Namespace":
            assert name == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{kind}/{name}"


# ---------------------------------------------------------------------------------------------- the gateway's pods

def test_deployment_runs_three_replicas_spread_across_nodes(objects):
    deployment = objects[("Deployment", "sluice")]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    terms = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert len(terms) == 1 and terms[0]["weight"] == 100
    term = terms[0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"]["matchLabels"], pod["metadata"]["labels"]), "anti-affinity must match its own pods"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_probes_hit_readyz_and_healthz_on_the_configmaps_admin_port(objects, sluice_yaml):
    container = sluice_container(objects[("Deployment", "sluice")])
    admin_port = port_of(sluice_yaml["admin"])
    # The admin API speaks TLS when adminTLS is set; a probe over plain HTTP would fail on every pod.
    scheme = "HTTPS" if "adminTLS" in sluice_yaml else "HTTP"
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get.get("scheme", "HTTP") == scheme, probe
        port = get["port"] if isinstance(get["port"], int) else container_port(container, get["port"])
        assert port == admin_port, f"{probe} probes {port}, the admin API listens on {admin_port}"
    assert container_port(container, "http") == port_of(sluice_yaml["listen"])
    assert container_port(container, "metrics") == port_of(sluice_yaml["metrics"]["listen"])
    assert container["args"] == ["serve", "--config", "/etc/sluice/sluice.yaml"]
    assert container["image"] == "ghcr.io/sluice-gateway/sluice:0.1.0"


def test_grace_period_covers_the_prestop_wait_and_the_drain(objects, sluice_yaml):
    pod = objects[("Deployment", "sluice")]["spec"]["template"]["spec"]
    command = sluice_container(objects[("Deployment", "sluice")])["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/bin/sleep" and len(command) == 2, command
    pre_stop = float(command[1])
    shutdown = duration_seconds(sluice_yaml["shutdownTimeout"])
    assert shutdown == 30
    assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown, \
        f"grace {pod['terminationGracePeriodSeconds']} s must exceed preStop {pre_stop} s + shutdownTimeout {shutdown} s"


def test_pods_run_non_root_with_a_read_only_root_and_no_capabilities(objects):
    pod = objects[("Deployment", "sluice")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert objects[("ServiceAccount", pod["serviceAccountName"])]["automountServiceAccountToken"] is False
    context = sluice_container(objects[("Deployment", "sluice")])["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = sluice_container(objects[("Deployment", "sluice")])["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


def test_files_the_configmap_names_are_mounted_where_it_names_them(objects, sluice_yaml):
    """sluice.yaml, the admin token and the TLS pair come from the ConfigMap and the Secret; stateDir is an emptyDir."""
    deployment = objects[("Deployment", "sluice")]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: Dict[str, Tuple[str, str, str]] = {}  # path in the container → (kind, object name, key)
    directories: Dict[str, dict] = {}
    for mount in sluice_container(deployment)["volumeMounts"]:
        volume = volumes[mount["name"]]
        directories[mount["mountPath"]] = volume
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        for source in sources:
            for kind, field in (("ConfigMap", "configMap"), ("Secret", "secret")):
                if field in source:
                    ref = source[field]
                    name = ref.get("name", ref.get("secretName"))
                    for item in ref["items"]:
                        files[f"{mount['mountPath']}/{item['path']}"] = (kind, name, item["key"])
    wanted = {"/etc/sluice/sluice.yaml": ("ConfigMap", "sluice-config"),
              sluice_yaml["adminTokenFile"]: ("Secret", "sluice-admin"),
              sluice_yaml["adminTLS"]["cert"]: ("Secret", "sluice-admin"),
              sluice_yaml["adminTLS"]["key"]: ("Secret", "sluice-admin")}
    for path, (kind, name) in wanted.items():
        assert path in files, f"{path} is not mounted ({sorted(files)})"
        got_kind, got_name, key = files[path]
        assert (got_kind, got_name) == (kind, name), path
        obj = objects[(kind, name)]
        assert key in obj.get("data", {}) or key in obj.get("stringData", {}), f"{kind}/{name} has no key {key}"
    assert "emptyDir" in directories[sluice_yaml["stateDir"]], "stateDir must be the pod's emptyDir"
    assert "emptyDir" in directories["/tmp"]


def test_secret_values_are_marked_as_placeholders(objects):
    secret = objects[("Secret", "sluice-admin")]
    assert set(secret["stringData"]) == {"admin-token", "tls.crt", "tls.key"}
    for key, value in secret["stringData"].items():
        assert "REPLACE-ME" in value, f"{key} does not say it is a placeholder"


def test_configmap_runs_in_etcd_mode_with_the_agreed_shape(sluice_yaml):
    store = sluice_yaml["stateStore"]
    assert store == {"kind": "etcd",
                     "endpoints": [f"http://etcd-{n}.etcd.sluice-system.svc:2379" for n in range(3)],
                     "prefix": "/sluice/", "leaseTTL": "10s"}
    assert sluice_yaml["listen"] == "0.0.0.0:8080" and sluice_yaml["admin"] == "0.0.0.0:15000"
    assert sluice_yaml["stateDir"] == "/var/lib/sluice"
    assert sluice_yaml["metrics"]["listen"] == "0.0.0.0:9091"
    assert sluice_yaml["accessLog"]["path"] == "stdout"
    assert sluice_yaml["routing"]["domain"] == "example.com"


# ---------------------------------------------------------------------------------------------- services, budgets

def test_services_select_the_pods_and_use_the_container_ports_by_name(objects):
    deployment = objects[("Deployment", "sluice")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = sluice_container(deployment)
    gateway = objects[("Service", "sluice")]["spec"]
    assert gateway["type"] == "LoadBalancer" and gateway["externalTrafficPolicy"] == "Local"
    admin = objects[("Service", "sluice-admin")]["spec"]
    assert admin.get("type", "ClusterIP") == "ClusterIP"
    for spec, names in ((gateway, {"http"}), (admin, {"admin", "metrics"})):
        assert selects(spec["selector"], labels)
        assert {p["name"] for p in spec["ports"]} == names
        for port in spec["ports"]:
            assert isinstance(port["targetPort"], str), f"{port['name']}: target the container port by name"
            assert port["port"] == container_port(container, port["targetPort"])


def test_pdb_and_hpa_govern_the_deployment(objects):
    deployment = objects[("Deployment", "sluice")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = objects[("PodDisruptionBudget", "sluice")]["spec"]
    assert selects(pdb["selector"]["matchLabels"], labels)
    assert pdb == {"maxUnavailable": 1, "selector": pdb["selector"]}
    hpa = objects[("HorizontalPodAutoscaler", "sluice")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sluice"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["minReplicas"] >= deployment["spec"]["replicas"]
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def test_example_etcd_is_the_cluster_the_configmap_points_at(objects, sluice_yaml):
    statefulset = objects[("StatefulSet", "etcd")]["spec"]
    service = objects[("Service", "etcd")]["spec"]
    assert statefulset["replicas"] == 3 and statefulset["serviceName"] == "etcd"
    assert service["clusterIP"] == "None", "the members' DNS names need a headless Service"
    assert selects(service["selector"], statefulset["template"]["metadata"]["labels"])
    assert statefulset["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    args = statefulset["template"]["spec"]["containers"][0]["args"]
    initial = next(a for a in args if a.startswith("--initial-cluster="))
    members = dict(m.split("=", 1) for m in initial.split("=", 1)[1].split(","))
    assert sorted(members) == ["etcd-0", "etcd-1", "etcd-2"]
    for name, peer in members.items():
        assert peer == f"http://{name}.etcd.{NAMESPACE}.svc:2380"
    clients = [f"http://{name}.etcd.{NAMESPACE}.svc:2379" for name in sorted(members)]
    assert sluice_yaml["stateStore"]["endpoints"] == clients


# ---------------------------------------------------------------------------------------------- the ConfigMap, served

def runnable_locally(config: dict, tmp_path: pathlib.Path, ports: List[int]) -> dict:
    """CONFIG with its addresses on loopback free ports and its files in TMP_PATH (a generated token and TLS pair)."""
    local = copy.deepcopy(config)
    listen, admin, metrics = ports
    local["listen"] = f"{LOOPBACK}:{listen}"
    local["admin"] = f"{LOOPBACK}:{admin}"
    local["metrics"]["listen"] = f"{LOOPBACK}:{metrics}"
    local["stateDir"] = str(tmp_path / "state")
    token = tmp_path / "admin-token"
    token.write_text("test-token\n")
    local["adminTokenFile"] = str(token)
    cert, key = tmp_path / "admin.crt", tmp_path / "admin.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=sluice-admin",
                    "-addext", f"subjectAltName=IP:{LOOPBACK}"], check=True, capture_output=True, timeout=30)
    local["adminTLS"] = {"cert": str(cert), "key": str(key)}
    return local


def test_the_configmaps_sluice_yaml_starts_a_gateway(sluice_yaml, free_ports, tmp_path):
    """The ConfigMap's sluice.yaml, every key of it, on a real `sluice serve` against a real etcd (one member here,
    where the cluster has three; only the addresses and files are made local): it starts, registers in etcd,
    answers /readyz over TLS, wants the token, and drains on SIGTERM."""
    binary = os.environ.get("SLUICE_BIN")
    if not binary:
        pytest.skip("SLUICE_BIN is not set: point it at the release build, as `make test-e2e` does")
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    etcd = EtcdCluster(free_ports(2), tmp_path / "etcd", size=1)
    try:
        etcd.start_all()
        local = runnable_locally(sluice_yaml, tmp_path, free_ports(3))
        local["stateStore"]["endpoints"] = etcd.endpoints
        config_path = tmp_path / "sluice.yaml"
        config_path.write_text(yaml.safe_dump(local))
        logs = tmp_path / "sluice"
        proc = spawn([binary, "serve", "--config", str(config_path)], logs)
        try:
            admin = f"https://{local['admin']}"

            def ready() -> bool:
                try:
                    return requests.get(f"{admin}/readyz", timeout=1, verify=False).status_code == 200
                except requests.RequestException:
                    return False

            wait_until(ready, 15, "sluice on the ConfigMap's settings answers /readyz over TLS", proc=proc, logs=logs)
            assert requests.get(f"http://{local['metrics']['listen']}/metrics", timeout=5).status_code == 200
            assert requests.get(f"{admin}/apis", timeout=5, verify=False).status_code == 401, "the token must be required"
            prefix = local["stateStore"]["prefix"]
            wait_until(lambda: etcd.ctl("get", prefix + "gateways/", "--prefix", "--keys-only").stdout.strip() != "", 10,
                       "the replica registered in etcd", proc=proc, logs=logs)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=duration_seconds(local["shutdownTimeout"]) + 5) == 0, tail_logs(logs)
            assert '"event":"drain.finished"' in pathlib.Path(f"{logs}.err").read_text()
        finally:
            _kill(proc)
    finally:
        etcd.stop_all()


# ---------------------------------------------------------------------------------------------- systemd

def unit_settings(text: str) -> Dict[str, Dict[str, List[str]]]:
    """section → key → values, in order (systemd allows a key more than once)."""
    sections: Dict[str, Dict[str, List[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"not a unit line: {line}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_reloads_drains_and_holds_enough_descriptors(sluice_yaml):
    service = unit_settings(UNIT.read_text())["Service"]
    one = {key: values[-1] for key, values in service.items()}
    assert one["Type"] == "simple", "sluice does not speak sd_notify"
    assert one["ExecStart"] == "/opt/sluice/bin/sluice serve --config /etc/sluice/sluice.yaml"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["KillSignal"] == "SIGTERM"
    assert duration_seconds(one["TimeoutStopSec"]) > duration_seconds(sluice_yaml["shutdownTimeout"])
    # Each client connection is two descriptors with its upstream's: 10 000 connections need 20 000 and some.
    assert int(one["LimitNOFILE"]) >= 65536
    assert one["Restart"] == "on-failure" and duration_seconds(one["RestartSec"]) > 0
    assert one["User"] == "sluice" and one["StateDirectory"] == "sluice"
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
        assert one[key] == value, key


def systemd_verify(unit: pathlib.Path, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    """`systemd-analyze verify` of UNIT with ExecStart's binary replaced by an executable stub (verify checks that it
    exists; /opt/sluice is not installed here). Every other line is checked as written."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    stub = tmp_path / "sluice-stub"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    copy_dir = tmp_path / "unit"
    copy_dir.mkdir(exist_ok=True)
    target = copy_dir / "sluice.service"
    target.write_text(unit.read_text().replace("/opt/sluice/bin/sluice", str(stub)))
    return subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verifies_the_unit_and_refuses_a_broken_one(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (make test installs the systemd package)")
    good = systemd_verify(UNIT, tmp_path / "good")  # no running systemd is needed: verify loads the file itself
    assert good.returncode == 0 and good.stderr.strip() == "", f"{good.returncode}: {good.stderr}"
    broken = tmp_path / "broken.service"
    broken.write_text(UNIT.read_text().replace("KillSignal=SIGTERM", "KillSignall=SIGTERM"))
    refused = systemd_verify(broken, tmp_path / "broken")
    assert "Unknown key" in refused.stderr and "KillSignall" in refused.stderr, refused.stderr
