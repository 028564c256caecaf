"""Retrying the operator's own Kubernetes API calls.

kopf retries its own requests (watches, its patches, event posts); the synchronous client calls of
our adapters do not, so each of them goes through :meth:`KubeRetry.call`:

- **429 Too Many Requests** (API Priority and Fairness, max-in-flight): wait at least what
  ``Retry-After`` says, then try again. A ``Retry-After`` longer than ``max_retry_after`` is not
  shortened, it ends the call: retrying earlier than the server asked only adds to its load, and the
  next pass (kopf timer) comes back later anyway.
- **5xx, connection errors and timeouts**: exponential backoff with jitter (half fixed, half random,
  so replicas and workloads hit by the same outage do not retry in lock-step).
- **Bounded**: at most ``attempts`` tries and ``budget_seconds`` in all, then
  :class:`KubeApiUnavailable` names the call and what to do.
- **Anything else** (400, 403, 404, 409, 422, …) is the caller's answer and is raised at once.

Whether a failed request may have taken effect matters for writes. Reads and absolute writes (merge
patches that set values, deletes) are idempotent: sending them twice is sending them once. A
*create* is not (``generateName``, random names): it is retried only when the request certainly did
not reach storage: a 429 (refused before it is processed) or a connection that could not be opened.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes.client.rest import ApiException
from urllib3.exceptions import ConnectTimeoutError, HTTPError, MaxRetryError, NewConnectionError

from rightsizer.core.errors import RightsizerError

T = TypeVar("T")
log = logging.getLogger(__name__)


class KubeApiUnavailable(RightsizerError):
    """The API server did not take a call within the retry budget."""

    def __init__(self, call: str, attempts: int, elapsed: float, last: str) -> None:
        super().__init__(
            f"{call}: the Kubernetes API server did not answer after {attempts} attempt(s) in "
            f"{elapsed:.1f}s ({last}); the operator tries again next pass. If this persists, check the "
            "API server's health and the API Priority and Fairness limits of the operator's identity"
        )
        self.call = call
        self.attempts = attempts
        self.last = last


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.25  # seconds before the second attempt; doubles each time
    max_delay: float = 4.0  # one backoff never exceeds this
    max_retry_after: float = 10.0  # the longest Retry-After we wait for within one call
    budget_seconds: float = 20.0  # the whole call, sleeps included

    def backoff(self, retry: int, jitter: float) -> float:
        """Delay before retry number `retry` (1-based); `jitter` in [0, 1)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return float(ceiling / 2 + jitter * ceiling / 2)


@dataclass(frozen=True)
class Transient:
    """Why a failure is worth another attempt, and what the server asked us to wait."""

    what: str
    retry_after: float | None = None
    surely_not_applied: bool = False  # the request never took effect (safe to resend a create)


def retry_after_seconds(exc: ApiException) -> float | None:
    """`Retry-After` in seconds (header, else the Status body's details.retryAfterSeconds)."""
    headers = exc.headers or {}
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            return None  # an HTTP date: rare from the API server; fall back to our backoff
    seconds = _status_details(exc).get("retryAfterSeconds")
    return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else None


def _status_details(exc: ApiException) -> dict[str, Any]:
    """`details` of the Status body the API server sent with an error (empty when there is none)."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    details = body.get("details") if isinstance(body, dict) else None
    return details if isinstance(details, dict) else {}


def status_causes(exc: ApiException) -> list[str]:
    """The `reason` of each cause in a Status body, e.g. ["DisruptionBudget"]."""
    causes = _status_details(exc).get("causes")
    return [str(c.get("reason", "")) for c in causes or [] if isinstance(c, dict)]


def classify(exc: BaseException) -> Transient | None:
    """A transient failure worth retrying, or None when the caller must handle it now."""
    if isinstance(exc, ApiException):
        if exc.status == 429:
            return Transient(f"429 {exc.reason}", retry_after_seconds(exc), surely_not_applied=True)
        if exc.status is not None and 500 <= exc.status <= 599:
            return Transient(f"{exc.status} {exc.reason}", retry_after_seconds(exc))
        if exc.status == 0 and "SSLError" in str(exc.reason):
            return Transient(f"TLS failure: {str(exc.reason).splitlines()[-1][:200]}")
        return None
    if isinstance(exc, MaxRetryError):
        refused = isinstance(exc.reason, NewConnectionError | ConnectTimeoutError)
        return Transient(f"connection failed: {exc.reason}", surely_not_applied=refused)
    if isinstance(exc, NewConnectionError | ConnectionRefusedError):
        return Transient(f"connection refused: {exc}", surely_not_applied=True)
    if isinstance(exc, HTTPError | ConnectionError | TimeoutError):
        return Transient(f"connection lost: {type(exc).__name__}: {exc}")
    return None


class KubeRetry:
    """Runs API calls under a :class:`RetryPolicy`; sleep, clock and randomness are injected."""

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def call(self, what: str, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """`fn()` until it succeeds, fails for good, or the budget is spent. `what` names the call
        in logs and errors ("PATCH node gpu-1")."""
        policy = self.policy
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as exc:
                transient = classify(exc)
                if transient is None or (not idempotent and not transient.surely_not_applied):
                    raise
                elapsed = self._clock() - started
                if transient.retry_after is not None and transient.retry_after > policy.max_retry_after:
                    raise KubeApiUnavailable(
                        what,
                        attempt,
                        elapsed,
                        f"{transient.what}, server asks to retry after {transient.retry_after:g}s",
                    ) from exc
                delay = policy.backoff(attempt, self._jitter())
                if transient.retry_after is not None:
                    delay = max(delay, transient.retry_after)
                if attempt >= policy.attempts or elapsed + delay > policy.budget_seconds:
                    raise KubeApiUnavailable(what, attempt, elapsed, transient.what) from exc
                log.warning(
                    "%s failed (%s); retry %d/%d in %.1fs",
                    what,
                    transient.what,
                    attempt,
                    policy.attempts - 1,
                    delay,
                )
                self._sleep(delay)
