"""``--rate-limit``: requests per key (or per client address) with the ``limits`` library.

``limits`` is what slowapi and flask-limiter both build on. Counted in this process's memory, or in
Redis when the server has a broker (``--broker``), so every process of every API machine counts
together. The sliding-window counter: no burst of twice the rate at a window's edge, as a fixed
window allows, for one counter read and one increment per request.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse, storage, strategies

from ..core.reply import Reply, error_reply
from ..store import Unavailable

__all__ = ["RateLimit"]

logger = logging.getLogger("dualserve")

#: The namespace of dualserve's counters in the storage (shared with other users of a Redis).
_NAMESPACE = "dualserve"


class RateLimit:
    """``rate`` as ``limits`` writes it (``60/minute``, ``10/second;1000/day``), per identity.

    :param broker: a Redis URL: count there, with every process that shares it.
    """

    def __init__(self, rate: str, broker: str | None = None) -> None:
        try:
            self.items: list[RateLimitItem] = [parse(part) for part in rate.split(";") if part.strip()]
        except ValueError as exc:
            raise ValueError(f"--rate-limit {rate!r} is not a rate such as 60/minute: {exc}") from exc
        if not self.items:
            raise ValueError(f"--rate-limit {rate!r} is not a rate such as 60/minute.")
        self.rate = rate
        self.shared = broker is not None
        self._limiter = strategies.SlidingWindowCounterRateLimiter(storage.storage_from_string(broker or "memory://"))

    def hit(self, identity: str) -> Reply | None:
        """Count one request of ``identity``: None if it is within every rate, else the 429."""
        try:
            for item in self.items:
                if not self._limiter.hit(item, _NAMESPACE, identity):
                    reset = self._limiter.get_window_stats(item, _NAMESPACE, identity).reset_time
                    retry = max(1, math.ceil(reset - time.time()))
                    detail = f"Rate limit of {item} exceeded; try again in {retry} s."
                    return error_reply(429, detail, [("retry-after", str(retry))])
        except Exception as exc:
            if not self.shared:
                raise
            # The shared counters are in Redis: unreachable, the answer is the broker's 503.
            raise Unavailable(f"The rate limit's counters cannot be reached: {exc}") from exc
        return None
