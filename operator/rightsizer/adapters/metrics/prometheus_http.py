"""Talking to Prometheus' HTTP API: one connection builder and one reading of its failures.

The operator's live source and the backtest's history reader both go through here, so a refused
query, an unreachable or slow server, an answer that is not the API's JSON and an unreadable token
file become the same :class:`MetricsUnavailable`, each with the remedy that fits who asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from rightsizer.core.errors import MetricsUnavailable

SOURCE = "Prometheus"


class _BearerTokenFile(requests.auth.AuthBase):
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.path.read_text().strip()}"
        return request


def prometheus_connection(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    bearer_token_file: str | None = None,
    ca_file: str | None = None,
    insecure_skip_verify: bool = False,
    timeout_seconds: float = 10.0,
    retries: int = 1,
    method: str = "GET",
) -> PrometheusConnect:
    """A PrometheusConnect to `url`, as the operator and its commands talk to Prometheus.

    `bearer_token_file` is read on every request, so a rotated (projected) ServiceAccount token is
    picked up without a restart; `ca_file` verifies a private CA; `insecure_skip_verify` disables
    TLS verification altogether (for test set-ups only).
    """
    session = requests.Session()
    session.verify = ca_file if ca_file else not insecure_skip_verify
    # The library's default retries 3x with 1s backoff; a control loop prefers a quick, typed failure.
    # Read timeouts are not retried: a slow Prometheus only gets slower when asked twice.
    retry = Retry(total=retries, read=False, backoff_factor=0.2, status_forcelist=(502, 503, 504))
    return PrometheusConnect(
        url=url,
        headers=dict(headers) if headers else None,
        retry=retry,
        auth=_BearerTokenFile(bearer_token_file) if bearer_token_file else None,
        session=session,
        timeout=timeout_seconds,
        method=method,
    )


@dataclass(frozen=True)
class Remedies:
    """What to tell the one who asked, by failure: an operator setting or a command's flag."""

    refused: str = "fix the PromQL query"
    unreachable: str = "check the Prometheus URL in the operator settings and that Prometheus is running"
    slow: str = "check Prometheus' load, or raise the metrics timeout"
    token: str = "check the token file path in the operator settings and that it is mounted"


@contextmanager
def answering(where: str, query: str, timeout_seconds: float, remedies: Remedies) -> Iterator[None]:
    """Run one request to `where`; any way it fails is raised as MetricsUnavailable."""
    try:
        yield
    except PrometheusApiClientException as exc:
        refused = str(exc).startswith("HTTP Status Code 4")
        raise MetricsUnavailable(
            SOURCE,
            f"{where} answered {exc} to {query!r}",
            remedies.refused if refused else "check Prometheus' health and logs",
        ) from exc
    except (requests.JSONDecodeError, KeyError, TypeError) as exc:  # not the HTTP API's JSON
        raise MetricsUnavailable(
            SOURCE,
            f"{where} sent an unreadable answer ({exc.__class__.__name__})",
            "check that the URL points at Prometheus' HTTP API",
        ) from exc
    except requests.RequestException as exc:
        if _timed_out(exc):
            raise MetricsUnavailable(
                SOURCE, f"{where} did not answer within {timeout_seconds}s", remedies.slow
            ) from exc
        raise MetricsUnavailable(
            SOURCE, f"cannot reach {where}: {exc.__class__.__name__}", remedies.unreachable
        ) from exc
    except OSError as exc:  # the bearer token file, read per request
        raise MetricsUnavailable(
            SOURCE, f"cannot read the bearer token for {where}: {exc}", remedies.token
        ) from exc


def _timed_out(exc: requests.RequestException) -> bool:
    # requests reports a timeout after exhausted retries as a ConnectionError wrapping urllib3's;
    # urllib3's "connection refused" (NewConnectionError) subclasses its timeout error, so exclude it.
    if isinstance(exc, requests.Timeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )
