"""One upstream call on a pool account: lease → call → report → retry elsewhere, in one place.

Every caller that spends an account (chat in gateway/services.py, images and videos in media/,
the voice token and the image wall in webui/services.py) runs its upstream work through
`account_attempt`:

- lease an account for the model (accounts/lease.py: pool order, fallback modes, in-flight cap),
  excluding the accounts this request already tried, and build the GrokClient for it;
- run the caller's coroutine with the attempt (`work(attempt)`);
- report the outcome to the pool exactly once (`AccountAttempt.end`): success counts a use and
  the quota, an UpstreamError goes through the reaction matrix (accounts/feedback.py), anything
  else — cancellation included — releases the slot without teaching the pool anything, unless
  the client was already being served (then it counts as a use);
- retry on another account when `account_retry_allowed` says so: the operator's `retry.on_codes`
  and `retry.max_retries`, never once something reached the client (`served()`).

The decision is the pool's single retry policy (accounts/feedback.py); the loop around it is a
plain `while`: tenacity's AsyncRetrying costs 0.16–0.2 ms per call in its coroutine-function checks
(measured on this machine, docs/pool.md), on every request and not only on retries, against the
gateway's 0.9 ms of added latency. asyncio.CancelledError ends the attempt (slot released) and
propagates unchanged.

Streams: with `keep=True` the lease outlives `account_attempt`. A successful `work` hands its
attempt to the caller (inside its result), and the caller calls `attempt.end(...)` when the stream
is over; failures inside `work` are still ended and retried here.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from accounts.feedback import account_retry_allowed
from accounts.lease import Lease, account_lease, account_release, account_report
from grokweb.errors import RateLimited
from grokweb.registry import ModelSpec
from grokweb.client import GrokClient
from grokweb.classify import UpstreamError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class AccountAttempt:
    """One leased account and its client, the `number`-th attempt (from 1) of one request."""

    lease: Lease
    client: GrokClient
    number: int
    ended: bool = False

    def end(self, outcome: BaseException | None, *, answer_started: bool) -> None:
        """Report the attempt's outcome to the pool and free its slot. Only the first call counts."""
        if self.ended:
            return
        self.ended = True
        try:
            if outcome is None or isinstance(outcome, UpstreamError):
                account_report(lease=self.lease, outcome=outcome, answer_started=answer_started)
            elif answer_started:
                # The account served (the client went away, or a gateway-side failure): a use.
                account_report(lease=self.lease, outcome=None, answer_started=True)
            else:
                # Cancelled or failed on our side before the upstream answered: nothing to learn.
                account_release(lease=self.lease)
        except Exception:
            log.exception("reporting the outcome of account %s failed", self.lease.account.id)


def _never() -> bool:
    return False


async def account_attempt(
    *,
    model: ModelSpec,
    work: Callable[[AccountAttempt], Awaitable[T]],
    served: Callable[[], bool] = _never,
    keep: bool = False,
    exclude: frozenset[int] = frozenset(),
) -> T:
    """Run `work` on a leased account of `model`'s pools, retrying on other accounts as the pool allows.

    `served()` says whether something already reached the client (then no retry, and a failure or a
    cancellation still counts as a use). With `keep`, a successful attempt is not ended here: the
    caller owns it (see the module doc). Raises what the last attempt raised; when no account is
    left for a retry, the failure that caused it (more telling than the pool's 429)."""
    tried: set[int] = set(exclude)
    last: BaseException | None = None
    number = 0
    while True:
        try:
            lease = await account_lease(model=model, exclude=frozenset(tried))
        except RateLimited:
            if last is None:
                raise
            raise last from None  # every account tried or busy: the upstream failure says more
        tried.add(lease.account.id)
        number += 1
        attempt: AccountAttempt | None = None
        try:
            client = GrokClient(token=lease.account.token, user_id=getattr(lease.account, "user_id", "") or "")
            lease.egress = getattr(client.egress, "label", "") or ""
            attempt = AccountAttempt(lease=lease, client=client, number=number)
            result = await work(attempt)
        except BaseException as exc:
            if attempt is None:
                account_release(lease=lease)
            else:
                attempt.end(exc, answer_started=served())
            if not account_retry_allowed(error=exc, attempt=number, answer_started=served()):
                raise
            log.info("attempt %d for %s on account %s failed before the first byte (%s); retrying on another account",
                     number, model.id, lease.account.id, getattr(exc, "kind", exc))
            last = exc
            continue
        if not keep:
            attempt.end(None, answer_started=True)
        return result
