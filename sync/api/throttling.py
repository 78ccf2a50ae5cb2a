"""Rate limits (DRF throttles) counted with one atomic cache increment.

DRF's `SimpleRateThrottle` keeps, per caller, the list of its request times:
every request reads that list from the cache, unpickles it, appends, pickles
and writes it back. At 1,200 requests a minute the list holds up to 1,200
floats (about 11 KB each way), and the bench measured the read and write at
0.8 ms of a worker's CPU per request, a third of an incremental pull. The
read-then-write is also a race: two workers serving the same caller at once
both read n and both write n + 1, so a client with parallel connections gets
more than its rate.

Here each caller has one counter per window, which starts at its first
request and lasts the rate's period: one atomic increment per request (one
round trip to Redis), and one more only when a request is refused, for
Retry-After. As with every fixed window, a caller can spend its budget at the
end of one window and again at the start of the next (at most twice the rate
within one period). django-ratelimit counts the same way, but with two round
trips per request (an add, then an increment).

With Redis down, django-redis answers None (IGNORE_EXCEPTIONS) and the
request goes through: throttling is off until Redis is back, as documented in
the settings.
"""

from __future__ import annotations

from typing import Any

from rest_framework import throttling

from syncbase.conf import sync_settings


class CountedThrottle(throttling.SimpleRateThrottle):
    """`SimpleRateThrottle`'s rates, scopes and cache keys, counted per window."""

    # Not DRF's "throttle_%(scope)s_%(ident)s": during a deploy, or just after
    # one, those keys still hold DRF's lists of request times, which cannot be
    # incremented (the increment failed with a TypeError: 500 on every request
    # of a caller until its old list expired).
    cache_format = "throttle-count:%(scope)s:%(ident)s"

    # Set by SimpleRateThrottle.__init__ from the rate (untyped in DRF).
    num_requests: int
    duration: int

    def get_rate(self) -> str | None:
        """The project's REST_FRAMEWORK rate for the scope, else ours
        (syncbase.conf THROTTLE_RATES): the API is throttled in any project."""
        rates = {**sync_settings.THROTTLE_RATES, **self.THROTTLE_RATES}
        return rates.get(self.scope)

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        count = self._increment()
        return count is None or count <= self.num_requests

    def _increment(self) -> int | None:
        try:
            return self.cache.incr(self.key)
        except ValueError:  # no window open for this caller: this request opens one
            if self.cache.add(self.key, 1, self.duration):
                return 1
            return self.cache.incr(self.key)  # another request opened it meanwhile

    def wait(self) -> float:
        """Seconds until the caller's window ends (Retry-After)."""
        ttl = getattr(self.cache, "ttl", None)  # django-redis; not Django's local memory
        # Whole seconds left; 0 once the key is gone, None for a key without expiry.
        left = ttl(self.key) if ttl is not None else None
        return float(left) if left else float(self.duration)


class AnonRateThrottle(CountedThrottle, throttling.AnonRateThrottle):
    """THROTTLE_ANON per client address, for requests without credentials."""


class UserRateThrottle(CountedThrottle, throttling.UserRateThrottle):
    """THROTTLE_USER per account, over every endpoint it calls."""


class TokenRateThrottle(CountedThrottle):
    """THROTTLE_TOKEN per token: each integration's token has its own budget,
    so one runaway import does not starve another that shares its account."""

    scope = "token"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        token = getattr(request, "auth", None)
        ident = getattr(token, "token_key", None)
        if ident is None:
            if not request.user or not request.user.is_authenticated:
                return None  # the anonymous throttle covers these
            ident = f"user-{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LinkRateThrottle(CountedThrottle, throttling.AnonRateThrottle):
    """THROTTLE_LINK per client address, for the file and part links
    (sync/api/blobs.py): their signature is the credential, and one upload
    of a large file is many parts, so they are not held to THROTTLE_ANON."""

    scope = "link"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
