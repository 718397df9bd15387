"""arq task bodies (the same as ours, asyncio style; see bench/systems/base.py)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from arq.connections import RedisSettings


async def noop(ctx: dict[str, Any]) -> None:
    await ctx["redis"].incr("bench:count")


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(0.01)
    await ctx["redis"].incr("bench:count")


async def pickup(ctx: dict[str, Any], enqueued_at: float) -> None:
    await ctx["redis"].rpush("bench:pickup", repr(time.time() - enqueued_at))


class WorkerSettings:
    functions = [noop, sleep, pickup]
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
