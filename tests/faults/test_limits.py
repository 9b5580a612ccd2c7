"""Limits hold under abuse, and a well-behaved sender is still served.

One webhook process with two receivers, `flood` and `quiet` (each its own
sender, its own token, each limited to RATE requests/s):
- 2 MiB bodies (1 MiB limit), with Content-Length and chunked: 413, and
  the process does not grow;
- slow-header connections (a byte a second): closed by the header timeout,
  while valid requests go on being served quickly;
- `flood` sends 1,000 requests/s while `quiet` sends 10/s: `flood` gets
  429 + Retry-After past its limit, `quiet` never does and stays fast.

The 413 and 429 are those of docs/delivery-semantics.md#401-413-415-400-408-429; the header
timeout is step 3 of docs/delivery-semantics.md#one-request-step-by-step.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bench.common import digest_of, imagestream, notification, percentile, timestamp
from imagestream.health import HEADER_TIMEOUT_S
from imagestream.kube.client import Kube
from imagestream.kube.resources import IMAGESTREAMS
from localdev.components import ComponentProcess
from localdev.controlplane import REPO_ROOT, ControlPlane
from localdev.private import write_private
from tests.faults.conftest import Processes, figure
from tests.integration.conftest import new_namespace

RATE = 50
HOST = "127.0.0.1:5999"
BIG = 2 * 1024 * 1024
BIG_REQUESTS = 50  # each way: with Content-Length, and chunked
RSS_GROWTH_MAX_KIB = 5 * 1024
SLOW_CONNECTIONS = 50
FLOOD_PER_S, QUIET_PER_S, FLOOD_SECONDS = 1000, 10, 5.0
P99_MAX_S = 0.25
"""Our target p99 for valid requests served beside slow-header connections."""
QUIET_P99_MAX_S = 1.0
"""Beside a 1,000 req/s flood the target is also 250 ms, but here the flood's own
generator, the webhook and the API server share two cores: asserted is that the
quiet sender is served promptly and never refused; the p99 is printed beside the target."""
CLOSE_SLACK_S = 3.0


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Senders:
    def __init__(self, webhook: ComponentProcess, namespace: str) -> None:
        self.webhook, self.namespace = webhook, namespace
        self.count = 0

    def body(self, stream: str) -> bytes:
        self.count += 1
        k = self.count
        return notification(
            event_id=f"lim-{k}",
            host=HOST,
            repository=f"{self.namespace}/{stream}",
            tag=f"t{k % 20}",
            digest=digest_of(f"lim-{self.namespace}-{k}"),
            created=timestamp(k),
        )

    async def post(
        self, session: aiohttp.ClientSession, receiver: str, data: object, **headers: str
    ) -> tuple[int, str | None, float]:
        started = time.monotonic()
        async with session.post(
            f"{self.webhook.webhook_url}/v1/events/{receiver}",
            data=data,
            headers={
                "Authorization": f"Bearer token-{receiver}",
                "Content-Type": "application/json",
                **headers,
            },
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            await response.read()
            return response.status, response.headers.get("Retry-After"), time.monotonic() - started


async def setup(
    kube: Kube, processes: Processes, kubeconfig: Path, directory: Path
) -> tuple[ComponentProcess, str]:
    namespace = await new_namespace(kube, "limits")
    for stream in ("flood", "quiet"):
        await kube.create(IMAGESTREAMS, namespace, imagestream(stream))
    receivers = []
    for name in ("flood", "quiet"):
        token = directory / f"token-{name}"
        write_private(token, f"token-{name}")
        receivers.append(
            f"  - name: {name}\n"
            "    type: distribution\n"
            "    integrated: true\n"
            f"    rateLimit: {{requestsPerSecond: {RATE}, burst: {RATE}}}\n"
            f"    auth: {{type: bearer, secretFiles: [{token}]}}\n"
        )
    config = directory / "receivers.yaml"
    config.write_text("receivers:\n" + "".join(receivers))
    webhook = processes.start(
        "webhook",
        kubeconfig,
        "--webhook-config",
        str(config),
        "--watch-namespaces",
        namespace,
    )
    await webhook.wait_ready()
    return webhook, namespace


async def chunks(size: int) -> AsyncIterator[bytes]:
    block = b"x" * 65536
    sent = 0
    while sent < size:
        yield block
        sent += len(block)


async def test_big_bodies_slow_headers_and_a_flood_do_not_starve_a_quiet_sender(
    controlplane: ControlPlane,
    kube: Kube,
    crds: list[str],
    processes: Processes,
    tmp_path: Path,
) -> None:
    webhook, namespace = await setup(kube, processes, controlplane.kubeconfig_path, tmp_path)
    senders = Senders(webhook, namespace)
    async with aiohttp.ClientSession() as session:
        # --- 2 MiB bodies -----------------------------------------------------------------
        await senders.post(session, "quiet", senders.body("quiet"))  # warm the process up
        rss_before = vm_rss_kib(webhook.pid)
        big_answers = []
        for _ in range(BIG_REQUESTS):
            big_answers.append((await senders.post(session, "quiet", io.BytesIO(b"x" * BIG)))[0])
            await asyncio.sleep(1 / RATE)  # stay under the rate limit: this is about size
        for _ in range(BIG_REQUESTS):
            try:
                status = (await senders.post(session, "quiet", chunks(BIG)))[0]
            except aiohttp.ClientError:
                status = -1  # the server closed before the client finished sending
            big_answers.append(status)
            await asyncio.sleep(1 / RATE)
        rss_growth = vm_rss_kib(webhook.pid) - rss_before
        assert set(big_answers[:BIG_REQUESTS]) == {413}, big_answers[:BIG_REQUESTS]
        assert set(big_answers[BIG_REQUESTS:]) <= {413, -1}, big_answers[BIG_REQUESTS:]
        refused_chunked = big_answers[BIG_REQUESTS:].count(413)
        assert rss_growth < RSS_GROWTH_MAX_KIB, f"RSS grew {rss_growth} KiB"

        # --- slow headers while valid traffic goes on -----------------------------------------
        host, port = webhook.webhook_addr.split(":")
        opened = time.monotonic()
        slow = [await asyncio.open_connection(host, int(port)) for _ in range(SLOW_CONNECTIONS)]
        closed_after: list[float] = []

        async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = b"POST /v1/events/quiet HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60
            try:
                for byte in request:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    try:
                        if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                            break
                    except TimeoutError:
                        continue
            except (ConnectionError, OSError):
                pass
            closed_after.append(time.monotonic() - opened)
            writer.close()

        valid: list[float] = []

        async def keep_sending() -> None:
            end = time.monotonic() + HEADER_TIMEOUT_S + CLOSE_SLACK_S
            while time.monotonic() < end:
                status, _, took = await senders.post(session, "quiet", senders.body("quiet"))
                assert status == 200, status
                valid.append(took)
                await asyncio.sleep(0.1)

        await asyncio.gather(keep_sending(), *(dribble(r, w) for r, w in slow))
        assert len(closed_after) == SLOW_CONNECTIONS
        assert max(closed_after) <= HEADER_TIMEOUT_S + CLOSE_SLACK_S, max(closed_after)
        slow_p99 = percentile(valid, 0.99)
        assert slow_p99 < P99_MAX_S, f"valid p99 {slow_p99:.3f}s during slow headers"

        # --- 1,000 requests/s from one sender, 10/s from another --------------------------
        await asyncio.sleep(2.0)  # both buckets full again
        quiet: list[tuple[int, str | None, float]] = []

        async def paced_quiet() -> None:
            began = time.monotonic()
            for n in range(int(QUIET_PER_S * FLOOD_SECONDS)):
                delay = began + n / QUIET_PER_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                quiet.append(await senders.post(session, "quiet", senders.body("quiet")))

        writes_before = await webhook.metric("imagestream_status_writes_total")
        flooder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.faults.flood",
            f"{webhook.webhook_url}/v1/events/flood",
            "token-flood",
            namespace,
            str(FLOOD_PER_S),
            str(FLOOD_SECONDS),
            stdout=asyncio.subprocess.PIPE,
            cwd=str(REPO_ROOT),
        )
        try:
            await asyncio.sleep(0.5)  # the flood is under way
            await paced_quiet()
            async with asyncio.timeout(FLOOD_SECONDS + 60):
                output, _ = await flooder.communicate()
        finally:
            if flooder.returncode is None:
                flooder.kill()
                await flooder.wait()
        writes = await webhook.metric("imagestream_status_writes_total") - writes_before

    flood = json.loads(output.decode().strip().splitlines()[-1])
    codes = flood["codes"]
    flood_ok, flood_429 = int(codes.get("200", 0)), int(codes.get("429", 0))
    quiet_codes = {status for status, _, _ in quiet}
    quiet_p99 = percentile([took for _, _, took in quiet], 0.99)
    assert quiet_codes == {200}, f"quiet sender got {quiet_codes}"
    quiet_p50 = percentile([took for _, _, took in quiet], 0.5)
    assert quiet_p99 < QUIET_P99_MAX_S, (
        f"quiet sender p99 {quiet_p99:.3f}s (p50 {quiet_p50:.3f}s), {flood}"
    )
    assert flood_429 > 0 and flood["retry_after_missing"] == 0, flood
    allowed = RATE * float(flood["seconds"]) + RATE  # the rate over the run, plus one burst
    assert flood_ok <= allowed, f"flood got {flood_ok} through, limit allows {allowed:.0f}"
    figure(
        "limits",
        big_bodies_413=f"{BIG_REQUESTS}/{BIG_REQUESTS} with Content-Length, "
        f"{refused_chunked}/{BIG_REQUESTS} chunked (rest: closed while sending)",
        rss_growth_kib=rss_growth,
        slow_header_sockets=SLOW_CONNECTIONS,
        slow_closed_within_s=round(max(closed_after), 1),
        valid_p99_ms_during_slow=round(slow_p99 * 1000, 1),
        flood_sent_per_s=round(flood["sent"] / float(flood["seconds"])),
        flood_accepted=flood_ok,
        flood_429=flood_429,
        quiet_sent=len(quiet),
        quiet_429=sum(1 for status, _, _ in quiet if status == 429),
        quiet_p50_ms=round(quiet_p50 * 1000, 1),
        quiet_p99_ms=round(quiet_p99 * 1000, 1),
        quiet_p99_target_ms=round(P99_MAX_S * 1000),
        status_writes=int(writes),
    )
