"""Run the real operator (`rightsizer run`) as a subprocess with a given kubeconfig, and stop it.

    with running_operator(kubeconfig, namespace, prometheus_url) as op:
        ...  # op.metrics_url, op.log()

The kubeconfig decides who the operator is: the local admin, or the chart's ServiceAccount through a
token (tests.support.chart.service_account_kubeconfig). GPUWorkloads left in the namespace are deleted
before the operator stops, with `cleanup_kubeconfig` (the cluster admin by default): their finalizers
need the operator running, and a least-privileged identity may not delete them itself.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.operator_process import OperatorProcess


def _kubectl() -> str:
    return str(Path(os.environ.get("RIGHTSIZER_BIN", "/usr/local/bin")) / "kubectl")


@contextmanager
def running_operator(
    kubeconfig: str,
    namespace: str,
    prometheus_url: str,
    extra_args: Sequence[str] = (),
    *,
    interval: float = 3,
    standalone: bool = True,
    cleanup_kubeconfig: str | None = None,
) -> Iterator[OperatorProcess]:
    """The operator watching `namespace`, healthy when entered; `extra_args` go to `rightsizer run`."""
    admin = cleanup_kubeconfig or os.environ.get("KUBECONFIG") or kubeconfig
    with OperatorProcess.start(
        admin,
        namespace,
        prometheus_url,
        interval=interval,
        extra_args=extra_args,
        standalone=standalone,
        identity=kubeconfig,
    ) as handle:
        try:
            yield handle
        finally:
            subprocess.run(
                [_kubectl(), "--kubeconfig", admin, "delete", "gpuworkloads", "--all", "-n", namespace,
                 "--timeout=60s"],
                capture_output=True,
                check=False,
                timeout=90,
            )  # fmt: skip
