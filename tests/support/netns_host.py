"""A test host with an address of its own: a network namespace joined to the host by a veth pair.

The API server refuses loopback addresses in EndpointSlices, and the local cluster's services listen
on 127.0.0.1 only. A test host in a network namespace created by the test has a private address the
API server accepts, reachable from the host over the veth pair and from nowhere else; a port of it is
relayed to a loopback service through a Unix socket (tests/support/relay.py), which crosses network
namespaces. Everything is removed afterwards: the relays stopped, the veth pair and namespace deleted.

Needs root (iproute2's `ip netns add`): without it the test fails saying so, it is not skipped.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.cluster import wait_for
from tests.support.local_tools import stop

ROOT = Path(__file__).resolve().parents[2]
# Test hosts take a /30 from here; one already in use on this machine (another run's) is skipped.
POOL = ipaddress.IPv4Network("10.213.0.0/16")


class HostUnavailable(AssertionError):
    """The test host could not be made; the message says what the machine lacks."""


@dataclass(frozen=True)
class NetnsHost:
    """`address` is the test host's, inside network namespace `netns`; `gateway` is the host's end."""

    netns: str
    address: str
    gateway: str
    port: int
    log_path: Path

    @property
    def netloc(self) -> str:
        return f"{self.address}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def connections(self) -> int:
        """Connections the test host has relayed so far."""
        return sum(line.startswith("relaying from") for line in self.log().splitlines())


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of POOL that no address or route of this machine overlaps."""
    taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines() + _ip("-4", "route").stdout.splitlines():
        for word in (w for w in line.split() if "." in w):
            try:
                taken.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                continue
    subnets = list(POOL.subnets(new_prefix=30))
    for subnet in random.sample(subnets, 64):
        if not any(subnet.overlaps(net) for net in taken if net.prefixlen > 0):
            return subnet
    raise HostUnavailable(f"no free /30 in {POOL}: delete test hosts left over (`ip netns list`)")


def _relay(cmd: list[str], log: Path, stack: ExitStack, what: str) -> None:
    """Start a relay, stopped when `stack` closes; return once it listens."""
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, cwd=ROOT)
    stack.callback(stop, proc, 10)

    def listening() -> bool:
        if proc.poll() is not None:
            raise HostUnavailable(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        return "listening on" in log.read_text()

    wait_for(listening, timeout=30, interval=0.2, describe=log.read_text)


@contextmanager
def relayed_host(target_host: str, target_port: int, port: int) -> Iterator[NetnsHost]:
    """A test host whose `address:port` relays each connection to `target_host:target_port` as seen
    from the host (e.g. a service on 127.0.0.1)."""
    if shutil.which("ip") is None:
        raise HostUnavailable(
            "`ip` not found: the test host needs Debian's iproute2 (apt-get install iproute2)"
        )
    suffix = secrets.token_hex(3)
    netns, outside, inside = f"rs-dcgm-{suffix}", f"rsh-{suffix}", f"rsn-{suffix}"
    with ExitStack() as stack:
        added = _ip("netns", "add", netns, check=False)
        if added.returncode != 0:
            raise HostUnavailable(
                f"cannot create network namespace {netns} ({added.stderr.strip()}): the test host needs "
                "root (or CAP_SYS_ADMIN and CAP_NET_ADMIN); run the e2e tests as root"
            )
        stack.callback(_ip, "netns", "delete", netns, check=False)
        subnet = _free_subnet()
        gateway, address = (str(h) for h in subnet.hosts())
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", netns)
        # Deleting one end deletes the pair (the inside end also goes with the namespace).
        stack.callback(_ip, "link", "delete", outside, check=False)
        _ip("addr", "add", f"{gateway}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", netns, "addr", "add", f"{address}/30", "dev", inside)
        _ip("-n", netns, "link", "set", inside, "up")
        _ip("-n", netns, "link", "set", "lo", "up")

        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rs-host-")))
        socket_path, log = workdir / "relay.sock", workdir / "relay.log"
        relay = [sys.executable, "-m", "tests.support.relay"]
        # Stopped in reverse: the test host's relay first, then the host's end.
        _relay(
            [*relay, "--listen", f"unix:{socket_path}", "--to", f"{target_host}:{target_port}"],
            workdir / "outside.log",
            stack,
            "the host's relay",
        )
        _relay(
            [
                "ip",
                "netns",
                "exec",
                netns,
                *relay,
                "--listen",
                f"{address}:{port}",
                "--to",
                f"unix:{socket_path}",
            ],
            log,
            stack,
            f"the relay in {netns}",
        )
        yield NetnsHost(netns, address, gateway, port, log)
