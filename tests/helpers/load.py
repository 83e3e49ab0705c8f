"""A bounded load generator for end-to-end tests: concurrent POST /api/recommend in a loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Outcome:
    """One request: wall-clock start and end, status (None: connection failed), model date."""

    started: float
    ended: float
    status: int | None
    model_date: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True for a 200 answer."""
        return self.status == 200


@dataclass
class Load:
    """Requests sent by :func:`generate_load`, in completion order."""

    outcomes: list[Outcome]

    def failed(self) -> list[Outcome]:
        """Every request that did not get a 200."""
        return [o for o in self.outcomes if not o.ok]

    def server_errors(self) -> list[Outcome]:
        """Every 5xx answer."""
        return [o for o in self.outcomes if o.status is not None and o.status >= 500]

    def first_served(self, model_date: str) -> float | None:
        """Wall-clock start of the first request answered from ``model_date``."""
        times = [o.started for o in self.outcomes if o.ok and o.model_date == model_date]
        return min(times) if times else None


async def generate_load(
    url: str,
    stop: asyncio.Event,
    *,
    bodies: Sequence[Mapping[str, Any]] = ({"songs": ["Hey Jude"]},),
    workers: int = 4,
    max_seconds: float = 60.0,
    max_requests: int = 200_000,
) -> Load:
    """POST ``bodies`` in turn to ``url`` from ``workers`` tasks until ``stop`` or a limit."""
    load = Load([])
    deadline = time.monotonic() + max_seconds
    timeout = aiohttp.ClientTimeout(total=30)

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        i = offset
        while not stop.is_set() and time.monotonic() < deadline:
            if len(load.outcomes) >= max_requests:
                return
            started = time.time()
            try:
                async with session.post(url, json=bodies[i % len(bodies)]) as response:
                    text = await response.text()
                    status = response.status
                body = json.loads(text) if status == 200 else {}
                outcome = Outcome(started, time.time(), status, body.get("model_date"))
            except (TimeoutError, aiohttp.ClientError) as exc:
                outcome = Outcome(started, time.time(), None, None, repr(exc))
                await asyncio.sleep(0.01)  # a refused connect returns at once: don't spin
            load.outcomes.append(outcome)
            i += 1

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session, n) for n in range(workers)))
    return load
