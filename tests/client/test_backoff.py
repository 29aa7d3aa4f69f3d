"""The package's one backoff policy and its failure counter."""

from __future__ import annotations

import pytest

from spooled_integrations.client.backoff import Backoff, BackoffPolicy
from spooled_integrations.runtime import RetryPolicy


def test_delays_double_up_to_the_cap():
    policy = BackoffPolicy(0.5, 3.0, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(10_000) == 3.0  # no overflow however many failures


def test_jitter_only_shortens():
    policy = BackoffPolicy(1.0, 1.0, jitter=0.5)
    assert all(0.5 <= policy.delay(1) <= 1.0 for _ in range(200))


@pytest.mark.parametrize(
    "bad", [{"base": -1, "cap": 1}, {"base": 1, "cap": -1}, {"base": 1, "cap": 1, "jitter": 1.5}]
)
def test_bad_policies_are_refused(bad):
    with pytest.raises(ValueError):
        BackoffPolicy(**bad)


def test_the_counter_and_the_retry_policy_use_the_policy():
    backoff = Backoff(1.0, 4.0, jitter=0)
    assert [backoff.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert backoff.failures == 4 and (backoff.base, backoff.cap, backoff.jitter) == (1.0, 4.0, 0)
    backoff.reset()
    assert backoff.next_delay() == 1.0
    retry = RetryPolicy(initial_delay=0.2, max_delay=5.0, jitter=0.2)
    assert retry.backoff == BackoffPolicy(0.2, 5.0, 0.2)
