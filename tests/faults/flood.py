"""A flooding sender in a process of its own (so it does not slow the test's own sender).

    python -m tests.faults.flood URL TOKEN NAMESPACE PER_SECOND SECONDS

POSTs PER_SECOND distribution notifications a second to URL (loopback) for
SECONDS, at most 200 at once, then prints one JSON line: how many were
sent, the answers by status, and whether every 429 carried Retry-After.
Bounded in count (PER_SECOND x SECONDS) and time (SECONDS + 30).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

import aiohttp

from bench.common import digest_of, notification, timestamp

HOST = "127.0.0.1:5999"
IN_FLIGHT_MAX = 200


async def flood(
    url: str, token: str, namespace: str, per_s: int, seconds: float
) -> dict[str, object]:
    if not url.startswith(("http://127.", "http://[::1]")):
        raise SystemExit("loopback only")
    codes: Counter[int] = Counter()
    retry_after_missing = 0
    gate = asyncio.Semaphore(IN_FLIGHT_MAX)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal retry_after_missing
        body = notification(
            event_id=f"flood-{n}",
            host=HOST,
            repository=f"{namespace}/flood",
            tag=f"t{n % 20}",
            digest=digest_of(f"flood-{namespace}-{n}"),
            created=timestamp(n),
        )
        async with gate:
            try:
                async with session.post(
                    url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
                ) as response:
                    await response.read()
                    codes[response.status] += 1
                    if response.status == 429 and not response.headers.get("Retry-After"):
                        retry_after_missing += 1
            except (aiohttp.ClientError, TimeoutError):
                codes[0] += 1

    began = time.monotonic()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=IN_FLIGHT_MAX)
    ) as session:
        tasks = []
        for n in range(int(per_s * seconds)):
            delay = began + n / per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, n)))
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
    elapsed = time.monotonic() - began
    return {
        "sent": len(tasks),
        "seconds": round(elapsed, 3),
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "retry_after_missing": retry_after_missing,
    }


def main() -> None:
    url, token, namespace, per_s, seconds = sys.argv[1:6]
    result = asyncio.run(flood(url, token, namespace, int(per_s), float(seconds)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
