"""The release tarball on a machine that never saw the build: a clean Debian 12 root from debootstrap (minbase), only
libssl3 and libnghttp2-14 added, the tarball unpacked into its /opt; the bundled `sluice demo` and `sluice serve` run
inside `chroot` (which shares the loopback network), the README's first manifest is applied with the bundled CLI, and
the README's curl request, sent from outside the chroot, gets the prediction.

    SLUICE_DIST_TARBALL=dist/sluice-0.1.0-linux-x86_64.tar.gz python -m pytest -q Tests/e2e/test_dist.py
    (without SLUICE_DIST_TARBALL the test runs `make dist` itself). Root only; needs deb.debian.org.
"""

import glob
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.request

import pytest
import yaml

from conftest import LOOPBACK, _kill, http_ok, port_open, spawn, tail_logs, wait_until

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
RUNTIME_PACKAGES = ["libssl3", "libnghttp2-14"]
DEBOOTSTRAP_TIMEOUT = 900
# The README's request: its input, its host, its answer from revision 00001 (model-1).
IRIS_INPUT = '{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
SERVICE_HOST = "sklearn-iris.kserve-test.example.com"
EXPECTED_PREDICTIONS = [1, 1]


def loud_skip(capsys, reason: str) -> None:
    """A skipped release test hides a broken artifact; say so on the terminal, not only in -rs's summary."""
    with capsys.disabled():
        print(f"\n{'!' * 100}\n!!! test_dist SKIPPED: {reason}\n{'!' * 100}")
    pytest.skip(reason)


def mirror_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{MIRROR}/dists/{SUITE}/Release", timeout=15) as answer:
            return answer.status == 200
    except OSError:
        return False


def release_tarball() -> pathlib.Path:
    """SLUICE_DIST_TARBALL when set (make test-e2e builds it first), else `make dist`'s newest for this machine."""
    given = os.environ.get("SLUICE_DIST_TARBALL")
    if given:
        path = pathlib.Path(given)
        assert path.is_file(), f"SLUICE_DIST_TARBALL={given} is not a file"
        return path
    subprocess.run(["make", "dist"], cwd=REPO, check=True, timeout=1800)
    found = sorted(glob.glob(str(REPO / "dist" / f"sluice-*-linux-{platform.machine()}.tar.gz")), key=os.path.getmtime)
    assert found, "make dist made no tarball"
    return pathlib.Path(found[-1])


def mounts_under(root: pathlib.Path) -> list:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def run_logged(args, timeout: float, what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{what}: {args} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.timeout(DEBOOTSTRAP_TIMEOUT + 300)
def test_the_release_tarball_serves_the_readmes_request_in_a_clean_debian_root(free_ports, tmp_path, capsys):
    if os.geteuid() != 0:
        loud_skip(capsys, "not root: debootstrap and chroot need root (make test runs as root)")
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is not installed (make test installs it: TEST_APT_PACKAGES)")
    if not mirror_reachable():
        loud_skip(capsys, f"debootstrap cannot reach the mirror {MIRROR}: the release test did NOT run")
    timings = {}
    started = time.monotonic()
    tarball = release_tarball()
    timings["tarball"] = time.monotonic() - started
    root = tmp_path / "root"
    processes = []
    try:
        # --------------------------------------------------------------------------- a machine that never saw the build
        t = time.monotonic()
        run_logged(["debootstrap", "--variant=minbase", SUITE, str(root), MIRROR], DEBOOTSTRAP_TIMEOUT, "debootstrap")
        timings["debootstrap"] = time.monotonic() - t
        assert not mounts_under(root), f"debootstrap left mounts: {mounts_under(root)}"
        shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
        t = time.monotonic()
        run_logged(["chroot", str(root), "apt-get", "update", "-qq"], 300, "apt-get update in the root")
        env_install = ["chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive",
                       "apt-get", "install", "-y", "-qq", "--no-install-recommends", *RUNTIME_PACKAGES]
        run_logged(env_install, 300, "installing the runtime libraries in the root")
        timings["apt-get"] = time.monotonic() - t
        # Nothing of the toolchain is there: no Swift runtime, no development packages.
        assert not list(root.glob("usr/lib/swift*")) and not list(root.glob("usr/lib/x86_64-linux-gnu/libswift*"))
        installed = run_logged(["chroot", str(root), "dpkg-query", "-W", "-f", "${Package}\\n"], 60, "dpkg-query").stdout.split()
        assert not [p for p in installed if p.endswith("-dev") or "swift" in p], installed

        # --------------------------------------------------------------------------- install as the README says
        with tarfile.open(tarball) as archive:
            top = {name.split("/", 1)[0] for name in archive.getnames()}
            assert len(top) == 1, f"the tarball must hold one directory, holds {top}"
            archive.extractall(root / "opt", filter="tar")
        release = f"/opt/{top.pop()}"
        release_dir = root / release.lstrip("/")
        for member in ("bin/sluice", "config/sluice.yaml", "config/manifests/1-create.yaml", "systemd/sluice.service", "README"):
            assert (release_dir / member).exists(), f"{member} is missing from the tarball"
        assert "apt-get install libssl3 libnghttp2-14" in (release_dir / "README").read_text()
        binary = f"{release}/bin/sluice"
        # Needed: Swift's runtime reads the process's arguments from /proc/self/cmdline (without /proc every command
        # is parsed as no arguments: `sluice version` printed the top-level help). Unmounted in `finally`.
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True, timeout=30)
        ldd = run_logged(["chroot", str(root), "ldd", binary], 60, "ldd in the root").stdout
        assert "not found" not in ldd, ldd
        version = run_logged(["chroot", str(root), binary, "version"], 60, "sluice version in the root").stdout
        assert version.splitlines()[0] == f"sluice {release.rsplit('-', 1)[1]}", version

        # --------------------------------------------------------------------------- the bundled config, on free ports
        listen, admin, metrics, model_1, model_2 = free_ports(5)
        config = yaml.safe_load((release_dir / "config" / "sluice.yaml").read_text())
        assert sorted(config["models"]) == ["gs://kfserving-examples/models/sklearn/1.0/model",
                                            "gs://kfserving-examples/models/sklearn/1.0/model-2"]
        config["listen"] = f"{LOOPBACK}:{listen}"
        config["admin"] = f"{LOOPBACK}:{admin}"
        config["metrics"]["listen"] = f"{LOOPBACK}:{metrics}"
        config["stateDir"] = "/tmp/sluice-state"
        config["models"] = {"gs://kfserving-examples/models/sklearn/1.0/model": [f"{LOOPBACK}:{model_1}"],
                            "gs://kfserving-examples/models/sklearn/1.0/model-2": [f"{LOOPBACK}:{model_2}"]}
        (root / "tmp" / "sluice.yaml").write_text(yaml.safe_dump(config))

        # chroot execs the command, so each Popen's pid is sluice's own; spawn gives each its own session to kill.
        t = time.monotonic()
        demo_logs = tmp_path / "demo"
        demo = spawn(["chroot", str(root), binary, "demo", "--listen", f"{LOOPBACK}:{model_1}", "--version", "1",
                      "--listen", f"{LOOPBACK}:{model_2}", "--version", "2"], demo_logs)
        processes.append(demo)
        serve_logs = tmp_path / "serve"
        serve = spawn(["chroot", str(root), binary, "serve", "--config", "/tmp/sluice.yaml"], serve_logs)
        processes.append(serve)
        wait_until(lambda: port_open(model_1) and port_open(model_2), 15, "the bundled demo predictors listen",
                   proc=demo, logs=demo_logs)
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{admin}/healthz") and port_open(listen), 15,
                   "the bundled sluice serve listens", proc=serve, logs=serve_logs)

        # --------------------------------------------------------------------------- the README's first steps
        server = ["--server", f"http://{LOOPBACK}:{admin}"]
        run_logged(["chroot", str(root), binary, "apply", "-n", "kserve-test", "-f",
                    f"{release}/config/manifests/1-create.yaml", *server], 60, "sluice apply 1-create.yaml")
        run_logged(["chroot", str(root), binary, "rollout", "status", "isvc", "sklearn-iris", "-n", "kserve-test",
                    "--timeout", "60s", *server], 90, "sluice rollout status (Ready)")
        curl = run_logged(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}",
                           "-H", f"Host: {SERVICE_HOST}", "-H", "Content-Type: application/json",
                           f"http://{LOOPBACK}:{listen}/v1/models/sklearn-iris:predict", "-d", IRIS_INPUT],
                          30, "the README's curl request")
        body, status = curl.stdout.rsplit("\n", 1)
        assert status == "200", f"{status}: {body}\n{tail_logs(serve_logs)}"
        assert json.loads(body) == {"predictions": EXPECTED_PREDICTIONS}
        timings["serve"] = time.monotonic() - t

        # The libraries are the root's own packages, not the build machine's.
        started_event = next(json.loads(line) for line in pathlib.Path(f"{serve_logs}.err").read_text().splitlines()
                             if '"event":"gateway.started"' in line)
        libssl = run_logged(["chroot", str(root), "dpkg-query", "-W", "-f", "${Version}", "libssl3"], 60, "dpkg-query").stdout
        assert started_event["versions"]["openssl"].split()[1] == libssl.split("-")[0], (started_event["versions"], libssl)

        # A release that drains on SIGTERM, as the unit and the pod's grace period expect.
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=40) == 0, tail_logs(serve_logs)
        assert '"event":"drain.finished"' in pathlib.Path(f"{serve_logs}.err").read_text()
    finally:
        for proc in processes:
            _kill(proc)
        for mount in reversed(mounts_under(root)):  # /proc, the only one this test makes
            subprocess.run(["umount", mount], timeout=30)
        for mount in reversed(mounts_under(root)):  # still busy: detach it, so that nothing holds the host's /proc
            subprocess.run(["umount", "--lazy", mount], timeout=30)
        # 220 MB per run: never leave the root behind (pytest keeps tmp_path of the last runs), unless something is
        # still mounted in it, where rmtree would reach into the host.
        if not mounts_under(root):
            shutil.rmtree(root, ignore_errors=True)
        timings["total"] = time.monotonic() - started
        with capsys.disabled():
            print("\ntest_dist timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
