from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.fixtures import *  # noqa: F403  (fixtures are shared with tests/contract)
from tests.support.prometheus_operator import PrometheusOperator


@pytest.fixture(scope="module")
def prometheus_operator(cluster: Cluster) -> Iterator[PrometheusOperator]:
    """The real prometheus-operator, for the tests of one module (stopped, its CRDs removed, after)."""
    with PrometheusOperator.start(cluster) as operator:
        yield operator
