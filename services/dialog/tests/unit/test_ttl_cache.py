from __future__ import annotations

from callbot.dialog.ttl_cache import TtlLruCache
from callbot.testkit.clocks import Ticks


def test_least_recently_used_entry_goes_first() -> None:
    cache: TtlLruCache[str, int] = TtlLruCache(max_size=2, ttl_s=10)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_entries_expire_after_ttl_since_stored_even_when_read() -> None:
    ticks = Ticks()
    cache: TtlLruCache[str, int] = TtlLruCache(max_size=10, ttl_s=5, clock=ticks)
    cache.put("a", 1)
    ticks.now = 4.9
    assert cache.get("a") == 1
    ticks.now = 5.0
    assert cache.get("a") is None
    assert len(cache) == 0
