"""Rate limits: fixed windows per key, in-process by default, in Redis when REDIS_URL is set.

One small interface, `Limiter.acquire(rules)`: every rule is checked first and counted only when
all pass, so a refused request costs the visitor nothing. Both implementations keep that
check-then-count atomic (no await in between in-process; one Lua script in Redis).
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from copines.config import Settings

log = logging.getLogger("copines.ratelimit")


@dataclass(frozen=True)
class Rule:
    """At most `limit` hits per `window` seconds for `key`; `name` labels refusals."""

    name: str
    key: str
    limit: int
    window: float


@dataclass(frozen=True)
class Refusal:
    """Which rule refused, and how many seconds until it lets the visitor in again."""

    rule: Rule
    retry_after: float

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


class Limiter(ABC):
    """Counts hits per key in fixed windows."""

    @abstractmethod
    async def acquire(self, rules: list[Rule]) -> Refusal | None:
        """Count one hit on every rule if none is exhausted; otherwise the refusing rule."""

    async def aclose(self) -> None:
        """Release connections, if any."""


class MemoryLimiter(Limiter):
    """Per-process windows: right for one worker; each worker counts alone otherwise."""

    def __init__(self, clock=time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window end, count)
        self._max_keys = max_keys

    async def acquire(self, rules: list[Rule]) -> Refusal | None:
        now = self._clock()
        if len(self._windows) > self._max_keys:
            self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        worst: Refusal | None = None
        for rule in rules:
            end, count = self._windows.get(rule.key, (0.0, 0))
            if end > now and count >= rule.limit:
                refusal = Refusal(rule, end - now)
                if worst is None or refusal.retry_after > worst.retry_after:
                    worst = refusal
        if worst is not None:
            return worst
        for rule in rules:
            end, count = self._windows.get(rule.key, (0.0, 0))
            if end <= now:
                end, count = now + rule.window, 0
            self._windows[rule.key] = (end, count + 1)
        return None


# KEYS: the rule keys; ARGV: limit1, window_ms1, limit2, window_ms2, ...
# Returns {index, pttl} of the rule that refuses (the longest wait), or {0, 0} after counting.
_ACQUIRE_LUA = """
local worst, wait = 0, 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i - 1])
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      ttl = tonumber(ARGV[2 * i])
      redis.call('PEXPIRE', key, ttl)
    end
    if ttl > wait then worst, wait = i, ttl end
  end
end
if worst > 0 then return {worst, wait} end
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, tonumber(ARGV[2 * i])) end
end
return {0, 0}
"""


class RedisLimiter(Limiter):
    """Windows in Redis, shared by every worker and instance.

    If Redis cannot be reached, the request is counted by an in-process limiter instead
    (and the failure logged): the chat stays up and keeps per-worker limits.
    """

    def __init__(self, url: str, prefix: str = "copines:rl:"):
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._prefix = prefix
        self._script = self._redis.register_script(_ACQUIRE_LUA)
        self._fallback = MemoryLimiter()
        self.failures = 0

    async def acquire(self, rules: list[Rule]) -> Refusal | None:
        if not rules:
            return None
        keys = [self._prefix + rule.key for rule in rules]
        args: list[int] = []
        for rule in rules:
            args += [rule.limit, max(1, int(rule.window * 1000))]
        try:
            index, wait_ms = await self._script(keys=keys, args=args)
        except Exception as exc:  # any Redis failure: degrade, do not take the chat down
            self.failures += 1
            log.warning("rate limits: Redis unavailable (%s); counting in this process", exc)
            return await self._fallback.acquire(rules)
        if int(index) == 0:
            return None
        return Refusal(rules[int(index) - 1], int(wait_ms) / 1000)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()


def build_limiter(settings: Settings) -> Limiter:
    """Redis when REDIS_URL is set, in-process otherwise."""
    if settings.redis_url:
        return RedisLimiter(settings.redis_url, settings.rate_limit_prefix)
    return MemoryLimiter()


MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


class ChatLimits:
    """The chat's rules, from Settings: per conversation and per client IP."""

    def __init__(self, settings: Settings, limiter: Limiter):
        self.settings = settings
        self.limiter = limiter

    def message_rules(self, ip: str, conversation_id: str | None) -> list[Rule]:
        s = self.settings
        rules = [
            Rule("ip_minute", f"ip:{ip}:m", s.rate_per_minute, MINUTE),
            Rule("ip_day", f"ip:{ip}:d", s.rate_per_day_ip, DAY),
        ]
        if conversation_id:
            rules.append(
                Rule("conversation_minute", f"cv:{conversation_id}:m", s.rate_per_minute, MINUTE)
            )
        return rules

    def new_conversation_rule(self, ip: str) -> Rule:
        s = self.settings
        return Rule("ip_new_conversations", f"ip:{ip}:new", s.rate_new_conversations_per_hour, HOUR)

    async def count_new_conversation(self, conversation_id: str) -> None:
        """Count the message that created a conversation against that conversation."""
        rule = Rule(
            "conversation_minute", f"cv:{conversation_id}:m", self.settings.rate_per_minute, MINUTE
        )
        await self.limiter.acquire([rule])

    async def check_message(
        self, ip: str, conversation_id: str | None, *, new_conversation: bool
    ) -> Refusal | None:
        """Count one visitor message (and a new conversation when it starts one)."""
        rules = self.message_rules(ip, conversation_id)
        if new_conversation:
            rules.append(self.new_conversation_rule(ip))
        return await self.limiter.acquire(rules)
