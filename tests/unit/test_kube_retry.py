"""The retry policy of the operator's own API calls: what is retried, how long it waits, when it stops."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.rest import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError

from rightsizer.adapters.kube_retry import (
    KubeApiUnavailable,
    KubeRetry,
    RetryPolicy,
    classify,
    retry_after_seconds,
    status_causes,
)

pytestmark = pytest.mark.unit

POLICY = RetryPolicy(attempts=6, base_delay=0.25, max_delay=4.0, max_retry_after=10.0, budget_seconds=20.0)


def api_error(
    status: int, retry_after: str | None = None, details: dict[str, Any] | None = None
) -> ApiException:
    exc = ApiException(
        status=status, reason={429: "Too Many Requests", 503: "Service Unavailable"}.get(status)
    )
    exc.headers = {"Retry-After": retry_after} if retry_after is not None else {}
    exc.body = json.dumps({"kind": "Status", "code": status, "details": details or {}})
    return exc


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def retrier(time: FakeTime, policy: RetryPolicy = POLICY, jitter: float = 0.0) -> KubeRetry:
    return KubeRetry(policy, sleep=time.sleep, clock=time.clock, jitter=lambda: jitter)


def failing(*failures: BaseException, result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A call that raises each failure in turn, then returns `result`; and its call counter."""
    calls = [0]

    def call() -> str:
        calls[0] += 1
        if calls[0] <= len(failures):
            raise failures[calls[0] - 1]
        return result

    return call, calls


def test_throttled_call_waits_at_least_what_retry_after_says_then_succeeds() -> None:
    time = FakeTime()
    call, calls = failing(api_error(429, "3"), api_error(429, "1"))
    assert retrier(time).call("PATCH scale", call) == "ok"
    assert calls[0] == 3
    assert time.sleeps[0] == 3.0  # Retry-After beats the shorter backoff
    assert time.sleeps[1] >= 1.0


def test_retry_after_comes_from_the_status_body_when_there_is_no_header() -> None:
    assert retry_after_seconds(api_error(429, details={"retryAfterSeconds": 7})) == 7.0
    assert retry_after_seconds(api_error(429, "2", details={"retryAfterSeconds": 7})) == 2.0
    assert retry_after_seconds(api_error(429)) is None


def test_retry_after_longer_than_the_cap_ends_the_call_without_waiting() -> None:
    time = FakeTime()
    call, calls = failing(api_error(429, "60"))
    with pytest.raises(KubeApiUnavailable, match="retry after 60s") as raised:
        retrier(time).call("PATCH node gpu-1", call)
    assert calls[0] == 1 and time.sleeps == []  # never earlier than the server asked, and no hammering
    assert "PATCH node gpu-1" in str(raised.value)


@pytest.mark.parametrize(
    "failure",
    [
        api_error(500),
        api_error(503),
        api_error(504),
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
        MaxRetryError(None, "/api", NewConnectionError(None, "refused")),
        ReadTimeoutError(None, "/api", "read timed out"),
        ConnectionRefusedError(111, "refused"),
        TimeoutError("timed out"),
        ApiException(status=0, reason="SSLError\n[SSL: UNEXPECTED_EOF_WHILE_READING] EOF"),
    ],
    ids=lambda f: type(f).__name__ + (f" {f.status}" if isinstance(f, ApiException) else ""),
)
def test_server_errors_and_lost_connections_are_retried(failure: BaseException) -> None:
    time = FakeTime()
    call, calls = failing(failure, failure)
    assert retrier(time).call("GET node", call) == "ok"
    assert calls[0] == 3 and len(time.sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 422])
def test_client_errors_are_the_callers_answer_and_raise_at_once(status: int) -> None:
    time = FakeTime()
    call, calls = failing(api_error(status))
    with pytest.raises(ApiException) as raised:
        retrier(time).call("PATCH node", call)
    assert raised.value.status == status
    assert calls[0] == 1 and time.sleeps == []


def test_exceptions_that_are_not_about_the_api_pass_through() -> None:
    time = FakeTime()
    call, calls = failing(ValueError("bad body"))
    with pytest.raises(ValueError):
        retrier(time).call("PATCH node", call)
    assert calls[0] == 1


def test_backoff_doubles_with_jitter_and_never_exceeds_the_ceiling() -> None:
    low, high = FakeTime(), FakeTime()
    failures = [api_error(503)] * 5
    retrier(low, jitter=0.0).call("GET", failing(*failures)[0])
    retrier(high, jitter=0.999).call("GET", failing(*failures)[0])
    # Half of each step is fixed, half random: never zero, never above min(max_delay, base × 2^n).
    assert low.sleeps == [0.125, 0.25, 0.5, 1.0, 2.0]
    ceilings = [0.25, 0.5, 1.0, 2.0, 4.0]
    assert all(lo < hi <= c for lo, hi, c in zip(low.sleeps, high.sleeps, ceilings, strict=True))


def test_attempts_are_bounded_and_the_error_names_the_call_and_the_remedy() -> None:
    time = FakeTime()
    call, calls = failing(*[api_error(503)] * 10)
    with pytest.raises(KubeApiUnavailable) as raised:
        retrier(time).call("PATCH deployments/web/scale", call)
    assert calls[0] == POLICY.attempts
    message = str(raised.value)
    assert "PATCH deployments/web/scale" in message and "503" in message
    assert "next pass" in message and "API Priority and Fairness" in message
    assert isinstance(raised.value.__cause__, ApiException)


def test_total_time_is_bounded_even_when_each_wait_is_allowed() -> None:
    time = FakeTime()
    policy = RetryPolicy(attempts=100, base_delay=1, max_delay=4, max_retry_after=10, budget_seconds=12)
    call, _ = failing(*[api_error(429, "5")] * 100)
    with pytest.raises(KubeApiUnavailable):
        retrier(time, policy).call("GET", call)
    assert sum(time.sleeps) <= 12
    assert time.sleeps == [5.0, 5.0]  # a third wait of 5 s would end past the budget


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (api_error(429, "1"), True),  # refused before it was processed
        (MaxRetryError(None, "/api", NewConnectionError(None, "refused")), True),
        (ConnectionRefusedError(111, "refused"), True),
        (api_error(503), False),  # may have been applied before the server failed
        (api_error(500), False),
        (ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")), False),
        (ReadTimeoutError(None, "/api", "read timed out"), False),
    ],
)
def test_a_create_is_retried_only_when_it_surely_did_not_happen(
    failure: BaseException, retried: bool
) -> None:
    time = FakeTime()
    call, calls = failing(failure)
    if retried:
        assert retrier(time).call("POST event", call, idempotent=False) == "ok"
        assert calls[0] == 2
    else:
        with pytest.raises(type(failure)):
            retrier(time).call("POST event", call, idempotent=False)
        assert calls[0] == 1


def test_a_pdb_refusal_is_recognised_by_its_cause() -> None:
    pdb = api_error(429, details={"causes": [{"reason": "DisruptionBudget", "message": "needs 1"}]})
    assert status_causes(pdb) == ["DisruptionBudget"]
    assert status_causes(api_error(429)) == []
    assert classify(ValueError()) is None


@given(
    statuses=st.lists(st.sampled_from([429, 500, 502, 503, 504]), min_size=1, max_size=30),
    retry_after=st.one_of(st.none(), st.integers(0, 15).map(str)),
    jitter=st.floats(0, 0.999),
)
def test_any_run_of_transient_failures_stays_within_attempts_and_budget(
    statuses: list[int], retry_after: str | None, jitter: float
) -> None:
    time = FakeTime()
    call, calls = failing(*[api_error(s, retry_after) for s in statuses])
    with suppress(KubeApiUnavailable):  # giving up is allowed; how long it took is what is checked
        assert retrier(time, jitter=jitter).call("GET", call) == "ok"
    assert calls[0] <= POLICY.attempts
    assert sum(time.sleeps) <= POLICY.budget_seconds
    assert all(s <= POLICY.max_retry_after for s in time.sleeps)
    if retry_after is not None and calls[0] > 1:
        assert min(time.sleeps) >= float(retry_after)
