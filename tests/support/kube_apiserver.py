"""Kill and restart the local cluster's kube-apiserver, as a crash and a restart would.

kwokctl's binary runtime runs the control plane as plain processes: each pid is in
``~/.kwok/clusters/<name>/pids/<component>.pid``, its command line, environment and directory in
``/proc/<pid>``. `restartable_apiserver` finds them from the admin kubeconfig (the cluster's CA lives
in that directory, and the API server found there must serve the kubeconfig's port), remembers how
each was started, and on leaving always brings the control plane back, whatever happened inside:
the API server first (until /readyz answers), then any component that died meanwhile.
kube-controller-manager and kube-scheduler exit when they cannot renew their leader lease for ten
seconds; in a real cluster the kubelet restarts them, here this does. The rest of the suite needs them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tests.support.cluster import Cluster, wait_for

APISERVER = "kube-apiserver"
LEADERS = ("kube-controller-manager", "kube-scheduler")  # components that hold a lease in kube-system


@dataclass(frozen=True)
class Component:
    """One control-plane process and how it was started."""

    name: str
    pid_file: Path
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    log: Path

    @classmethod
    def of(cls, home: Path, name: str) -> Component | None:
        """The running process of `name` in the cluster directory `home`, or None."""
        pid_file = home / "pids" / f"{name}.pid"
        try:
            proc = Path(f"/proc/{int(pid_file.read_text().strip())}")
            argv = tuple(a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a)
            raw_env = (proc / "environ").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except (OSError, ValueError):
            return None
        if not argv or Path(argv[0]).name != name:
            return None  # the pid was reused by something else
        env = dict(e.decode().split("=", 1) for e in raw_env if b"=" in e)
        return cls(name, pid_file, argv, env, cwd, home / "logs" / f"{name}.log")

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            return False
        zombie = any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())
        return not zombie and argv0 == self.argv[0]

    def kill(self) -> None:
        """SIGKILL, as a crash: no graceful shutdown, every connection cut."""
        pid = self.pid()
        if pid is not None and self.running():
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not self.running(), timeout=30, interval=0.1)

    def start(self) -> None:
        """Start it again with the same command line, environment and directory, detached from the
        test (its own session, reparented to init) so it outlives the test process like the first."""
        if self.running():
            return
        out = subprocess.run(
            [
                "sh",
                "-c",
                'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!',
                "sh",
                str(self.log),
                *self.argv,
            ],
            capture_output=True,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            check=True,
            text=True,
        ).stdout
        # kwokctl stops the cluster through this file: it must name the new process.
        self.pid_file.write_text(out.strip())


@dataclass(frozen=True)
class ControlPlane:
    apiserver: Component
    others: tuple[Component, ...]
    port: int

    @classmethod
    def of(cls, kubeconfig: str) -> ControlPlane | None:
        """The control plane behind `kubeconfig`, or None when kwokctl does not run it here."""
        cluster = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
        port = urlsplit(str(cluster["server"])).port or 443
        ca = cluster.get("certificate-authority")
        if not ca:
            return None
        home = Path(ca).resolve().parents[1]  # ~/.kwok/clusters/<name>/pki/ca.crt
        apiserver = Component.of(home, APISERVER)
        if apiserver is None or f"--secure-port={port}" not in apiserver.argv:
            return None  # not the API server of this kubeconfig: never touch it
        names = sorted(p.stem for p in (home / "pids").glob("*.pid") if p.stem not in (APISERVER, "etcd"))
        others = tuple(c for c in (Component.of(home, n) for n in names) if c is not None)
        return cls(apiserver, others, port)

    def kill(self) -> None:
        self.apiserver.kill()
        wait_for(lambda: not self._listening(), timeout=30, interval=0.1)

    def start(self) -> None:
        self.apiserver.start()

    def wait_ready(self, cluster: Cluster, timeout: float = 120) -> None:
        wait_for(lambda: ready(cluster), timeout=timeout, interval=0.5)

    def heal(self, cluster: Cluster, timeout: float) -> None:
        """The API server answering /readyz, every component that ran before running again, and the
        restarted leaders holding their leases (until then, nothing creates ServiceAccounts or
        schedules pods)."""
        self.apiserver.start()
        self.wait_ready(cluster, timeout)
        restarted_at = datetime.now(UTC)
        restarted = [c for c in self.others if not c.running()]
        for component in restarted:
            component.start()
        for component in restarted:
            if component.name in LEADERS:
                wait_for(lambda c=component: lease_acquired(cluster, c.name, restarted_at), timeout=timeout)

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0


def ready(cluster: Cluster) -> bool:
    return cluster.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


def lease_acquired(cluster: Cluster, name: str, since: datetime) -> bool:
    out = cluster.kubectl("get", "lease", name, "-n", "kube-system", "-o", "json", check=False, timeout=10)
    if out.returncode != 0:
        return False
    acquired = json.loads(out.stdout).get("spec", {}).get("acquireTime")
    return bool(acquired) and datetime.fromisoformat(acquired.replace("Z", "+00:00")) >= since.replace(
        microsecond=0
    )


@contextmanager
def restartable_apiserver(cluster: Cluster, heal_timeout: float = 120) -> Iterator[ControlPlane]:
    """The control plane, whose API server the block may kill and start; healthy again afterwards."""
    plane = ControlPlane.of(cluster.kubeconfig)
    if plane is None:
        raise AssertionError(
            f"no kwokctl kube-apiserver process behind {cluster.kubeconfig}: this test needs the local "
            "cluster (hack/cluster.sh), whose API server runs as a process"
        )
    try:
        yield plane
    finally:
        started = time.monotonic()
        plane.heal(cluster, heal_timeout)
        print(f"control plane healthy {time.monotonic() - started:.1f}s after the block")
