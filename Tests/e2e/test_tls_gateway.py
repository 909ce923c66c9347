"""TLS through the release binary: Mozilla "intermediate" compliance checked by sslyze, HTTP/2 over TLS with curl,
and a certificate renewed in place picked up without a restart. Certificates are made at test time."""
import os
import pathlib
import ssl
import subprocess
import sys

import pytest

from conftest import LOOPBACK, REV1, SERVICE_HOST, spawn, wait_until, port_open, _kill

SLUICE_BIN = os.environ.get("SLUICE_BIN")
# sslyze pins cryptography<47 and kserve needs >=50, so it lives in its own venv (the Makefile makes .venv-sslyze).
SSLYZE_PYTHON = os.environ.get("SSLYZE_PYTHON", str(pathlib.Path(__file__).resolve().parents[2] / ".venv-sslyze/bin/python"))
pytestmark = [pytest.mark.skipif(not SLUICE_BIN, reason="SLUICE_BIN is not set (make test-e2e sets it)"),
              pytest.mark.timeout(120)]


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca_and_leaf(d: pathlib.Path, name: str,
                     san: str = f"DNS:{SERVICE_HOST},DNS:*.kserve-test.example.com") -> None:
    """A test CA and a leaf for SAN (SERVICE_HOST by default) signed by it, as name.crt / name.key (the CA is shared)."""
    if not (d / "ca.crt").exists():
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "ca.key"),
                "-out", str(d / "ca.crt"), "-days", "2", "-subj", "/CN=Sluice Test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / f"{name}.key"),
            "-out", str(d / f"{name}.csr"), "-subj", f"/CN={SERVICE_HOST}")
    (d / "ext.cnf").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-out", str(d / f"{name}.crt"), "-days", "2", "-extfile", str(d / "ext.cnf"))


@pytest.fixture
def tls_sluice(kserve_servers, free_ports, tmp_path):
    listen, admin = free_ports(2)
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca_and_leaf(certs, "first")
    (certs / "tls.crt").write_bytes((certs / "first.crt").read_bytes())
    (certs / "tls.key").write_bytes((certs / "first.key").read_bytes())
    m1 = kserve_servers[REV1].address
    config = tmp_path / "tls.yaml"
    config.write_text(f"""listen: {LOOPBACK}:{listen}
admin: {LOOPBACK}:{admin}
stateDir: {tmp_path}/state
tls: {{certificates: [{{cert: {certs}/tls.crt, key: {certs}/tls.key}}]}}
services:
- name: sklearn-iris
  namespace: kserve-test
  revisions: {{sklearn-iris-predictor-default-00001: [{m1}]}}
  traffic: [{{revisionName: sklearn-iris-predictor-default-00001, percent: 100, latestRevision: true}}]
""")
    proc = spawn([SLUICE_BIN, "serve", "--config", str(config)], tmp_path / "sluice")
    wait_until(lambda: port_open(listen), 15, "sluice TLS port", proc=proc, logs=tmp_path / "sluice")
    yield listen, certs, proc
    _kill(proc)


def served_certificate_serial(port: int, ca: pathlib.Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with context.wrap_socket(__import__("socket").create_connection((LOOPBACK, port), 5), server_hostname=SERVICE_HOST) as s:
        return int(s.getpeercert()["serialNumber"], 16)


def test_mozilla_intermediate_compliance_by_sslyze(tls_sluice):
    port, certs, _ = tls_sluice
    assert os.path.exists(SSLYZE_PYTHON), f"{SSLYZE_PYTHON} is missing: make test-e2e creates it"
    result = subprocess.run([SSLYZE_PYTHON, "-m", "sslyze", "--mozilla_config=intermediate", "--certinfo_ca_file",
                             str(certs / "ca.crt"), "--sni", SERVICE_HOST, f"{LOOPBACK}:{port}"],
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0 and "OK - Compliant" in result.stdout, result.stdout[-3000:]


def test_http2_over_tls_and_http11_fallback_with_curl(tls_sluice):
    port, certs, _ = tls_sluice
    base = ["curl", "-sS", "--max-time", "10", "--cacert", str(certs / "ca.crt"), "--resolve", f"{SERVICE_HOST}:{port}:{LOOPBACK}",
            "-H", "Content-Type: application/json", "-d", '{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}',
            "-w", "\n%{http_code} %{http_version}", f"https://{SERVICE_HOST}:{port}/v1/models/sklearn-iris:predict"]
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        out = subprocess.run(base[:1] + [flag] + base[1:], capture_output=True, text=True, timeout=20).stdout
        body, status = out.rsplit("\n", 1)
        assert status == f"200 {version}", out
        assert '"predictions":[1,1]' in body.replace(" ", ""), out


def test_certificate_renewed_in_place_is_served_without_restart(tls_sluice):
    port, certs, proc = tls_sluice
    before = served_certificate_serial(port, certs / "ca.crt")
    make_ca_and_leaf(certs, "second")
    # As cert-manager does: write the new pair next to the old one, then rename over it.
    (certs / "tls.key.new").write_bytes((certs / "second.key").read_bytes())
    (certs / "tls.crt.new").write_bytes((certs / "second.crt").read_bytes())
    os.rename(certs / "tls.key.new", certs / "tls.key")
    os.rename(certs / "tls.crt.new", certs / "tls.crt")
    second = int(subprocess.run(["openssl", "x509", "-in", str(certs / "second.crt"), "-noout", "-serial"],
                                capture_output=True, text=True).stdout.strip().split("=")[1], 16)
    assert second != before
    wait_until(lambda: served_certificate_serial(port, certs / "ca.crt") == second, 10, "the renewed certificate is served", proc=proc)
    assert proc.poll() is None
