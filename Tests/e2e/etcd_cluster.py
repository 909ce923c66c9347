"""Real etcd members (Debian's etcd-server) on loopback for the tests: started, stopped and killed by pid."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import List, Optional

import requests

from conftest import LOOPBACK, _kill, spawn, wait_until

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: pathlib.Path
    logs: pathlib.Path
    proc: Optional[subprocess.Popen] = None

    @property
    def client_url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"


class EtcdCluster:
    """N etcd members on loopback, each in its own data dir; stopped and started again by pid."""

    def __init__(self, ports: List[int], root: pathlib.Path, size: int = 3):
        """PORTS: a client and a peer port per member."""
        root.mkdir(parents=True, exist_ok=True)
        self.members = [EtcdMember(f"m{i}", ports[2 * i], ports[2 * i + 1], root / f"m{i}", root / f"m{i}-log")
                        for i in range(size)]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> List[str]:
        return [m.client_url for m in self.members]

    def start(self, i: int) -> None:
        m = self.members[i]
        assert m.proc is None or m.proc.poll() is not None, f"etcd {m.name} is running"
        m.proc = spawn([ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
                        "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                        "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                        "--initial-cluster", self.initial_cluster, "--initial-cluster-state", "new",
                        "--initial-cluster-token", "sluice-scaleout-test",
                        "--heartbeat-interval", "50", "--election-timeout", "500",
                        "--experimental-watch-progress-notify-interval", "1s"], m.logs)

    def start_all(self) -> None:
        for i in range(len(self.members)):
            if self.members[i].proc is None or self.members[i].proc.poll() is not None:
                self.start(i)
        wait_until(self.healthy, 30, "etcd cluster healthy", interval=0.1, logs=self.members[0].logs)

    def stop(self, i: int, sig: int = signal.SIGTERM) -> None:
        m = self.members[i]
        if m.proc is not None:
            _kill(m.proc, sig)

    def stop_all(self) -> None:
        for i in range(len(self.members)):
            self.stop(i)

    def healthy(self, members: Optional[List[int]] = None) -> bool:
        ids = range(len(self.members)) if members is None else members
        for i in ids:
            try:
                if requests.get(self.members[i].client_url + "/health", timeout=1).json().get("health") != "true":
                    return False
            except (requests.RequestException, ValueError):
                return False
        return True

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([ETCDCTL, "--endpoints", ",".join(self.endpoints), "--command-timeout=5s", *args],
                              capture_output=True, text=True, timeout=15, env={**os.environ, "ETCDCTL_API": "3"})

    def get_json(self, key: str):
        r = self.ctl("get", key, "--print-value-only")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else None
