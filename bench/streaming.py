"""``streaming``: what the hub adds to a token stream, against the upstream read directly.

What it measures
    A fake OpenAI-compatible upstream (``bench.references.fake_upstream_app``, its own uvicorn
    process, the hub's flags) answers ``/v1/chat/completions`` with ``stream: true`` by a role
    chunk, then ``--tokens`` content chunks on a fixed schedule (one every ``--interval-ms``,
    the first at once), a finish chunk, a usage chunk and ``data: [DONE]``. The hub (one
    uvicorn worker, rate limit 0, an admin key made beforehand) gets it as provider ``fake``
    (kind ``openai``, through ``PUT /api/v1/providers/fake``) and an agent ``bench-stream``
    with model ``fake/m``. The same stream is then read ``--runs`` times on each of three
    paths, interleaved and one at a time: (a) directly from the fake, (b) through the hub's
    SSE (``POST /api/v1/sessions/{id}/messages`` with ``stream: true``, one session reused
    sequentially), (c) through the hub's ``/v1/chat/completions`` with model ``fake/m``.

How
    The client is raw asyncio (uvloop when installed) on one keep-alive HTTP/1.1 connection
    per path; it stamps each token event (``event: token``, or a chunk with non-empty
    ``delta.content``) when its last byte arrives. One warm-up stream per path is not counted.
    Reported per path: time to first token (request written -> first token read) p50/p99,
    the inter-token gap p50/p99, and the token delivery latency p50/p99: the fake writes its
    emission time (CLOCK_MONOTONIC, which every process on the machine shares) into each
    token's text, which the hub relays unchanged, so the client reads, per token, emission ->
    arrival (tokens 1.. only, the first token's belongs to the first-token figure). For the
    hub paths: the ADDED first token (hub p50 - direct p50, goal < 2 ms), the ADDED per-token
    latency (hub delivery p50 and p99 - direct p50 and p99; the goal, < 0.2 ms, is checked on
    the p50), the added gap, and, as a cross-check that needs no timestamps, the per-token
    delay matched by index: for token i >= 1, (its arrival - the stream's first-token arrival)
    minus the mean of the same over the direct runs. That one is aligned on the first token,
    so it only shows delay that grows or varies along the stream; a constant per-token relay
    cost cancels out of it (it goes negative when the first token is relayed slower than the
    rest), which is why the goal is checked on the delivery latency.

Fails when a server fails or a stream breaks (status, token count, no ``done``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import harness, references
from bench.harness import BenchError, Context, Server, log, percentile
from bench.report import Table, pair

NAME = "streaming"
FAKE_MODEL = "fake/m"
STREAM_AGENT_ID = "bench-stream"
PATH_LABELS: dict[str, str] = {
    "direct": "direct to the fake upstream",
    "sse": "hub SSE /api/v1/sessions/{id}/messages",
    "compat": "hub /v1/chat/completions",
}
GOAL_FIRST_TOKEN_MS = 2.0
GOAL_TOKEN_MS = 0.2
SMOKE = {"tokens": 5, "interval_ms": 5.0, "runs": 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("streaming overhead")
    group.add_argument("--tokens", type=int, default=50, help="tokens per stream (50)")
    group.add_argument(
        "--interval-ms", type=float, default=20.0, help="upstream token interval (20 ms)"
    )
    group.add_argument("--runs", type=int, default=20, help="streams per path (20)")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.tokens, args.runs) < 2:
        parser.error("--tokens and --runs must be >= 2")
    if args.interval_ms <= 0:
        parser.error("--interval-ms must be > 0")


# --- the client: a raw HTTP/1.1 reader timing each token -----------------------------------


@dataclasses.dataclass
class StreamRun:
    """One stream read to its end: when each token event arrived, in seconds after the
    request was written (``sent``: perf_counter at that moment)."""

    sent: float
    arrivals: list[float]
    delivery: list[float] = dataclasses.field(default_factory=list)  # emitted -> read, seconds
    status: int = 0
    done: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done and not self.error


def stream_request(port: int, path: str, secret: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {secret}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def _classify(event: bytes, kind: str) -> str:
    """'token', 'done', 'error' or '' for one SSE event (bytes between blank lines).

    ``kind`` 'sse' is the hub's own framing (``event: token``); 'openai' is chunk ``data:``
    lines, where a token is a chunk with a non-empty ``delta.content`` (the role chunk with
    ``"content":""`` is not one). Byte tests, not JSON parsing, to keep the client light."""
    if kind == "sse":
        for what in ("token", "done", "error"):
            if b"event: " + what.encode() in event:
                return what
        return ""
    if event.startswith(b"data: [DONE]"):
        return "done"
    if b'"content":"' in event and b'"content":""' not in event:
        return "token"
    if b'"error"' in event:
        return "error"
    return ""


async def read_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, kind: str
) -> tuple[StreamRun, bool]:
    """Write ``request`` and read its (chunked) SSE response to the end, stamping each token
    event with the time its last byte arrived. Returns the run and whether the connection can
    be reused."""
    clock = time.perf_counter
    run = StreamRun(sent=clock(), arrivals=[])
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    run.status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    keep_alive = b"close" not in headers.get(b"connection", b"")
    if b"chunked" not in headers.get(b"transfer-encoding", b""):
        length = int(headers.get(b"content-length", b"-1"))
        body = await (reader.readexactly(length) if length >= 0 else reader.read())
        run.error = body[:300].decode(errors="replace")
        return run, keep_alive and length >= 0
    buffer = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            break
        now, now_ns = clock(), time.monotonic_ns()
        buffer += data[:-2]
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            what = _classify(event, kind)
            if what == "token":
                run.arrivals.append(now - run.sent)
                at = event.find(b"@")
                if at >= 0:
                    stamp = event[at + 1 : at + 20]
                    digits = len(stamp) - len(stamp.lstrip(b"0123456789"))
                    run.delivery.append((now_ns - int(stamp[:digits] or 0)) / 1e9)
            elif what == "done":
                run.done = True
            elif what == "error" and not run.error:
                run.error = event[:300].decode(errors="replace")
    return run, keep_alive


# --- the servers ----------------------------------------------------------------------------


def register_fake(hub: Server, fake: Server, secret: str) -> None:
    """Provider ``fake`` (kind openai) at the fake upstream, and agent ``bench-stream``."""
    harness.api(
        hub,
        "PUT",
        "/api/v1/providers/fake",
        secret,
        {"kind": "openai", "base_url": f"{fake.base_url}/v1", "models": ["m"]},
    )
    harness.api(
        hub,
        "POST",
        "/api/v1/agents",
        secret,
        {"id": STREAM_AGENT_ID, "name": "Bench stream agent", "model": FAKE_MODEL},
    )


def create_sessions(hub: Server, secret: str, count: int) -> list[str]:
    """``count`` sessions of the stream agent (8 requests in flight)."""

    def one(_index: int) -> str:
        body = {"agent_id": STREAM_AGENT_ID}
        return str(harness.api(hub, "POST", "/api/v1/sessions", secret, body)["id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


@contextlib.contextmanager
def fake_and_hub(tokens: int, interval_ms: float) -> Iterator[tuple[Server, Server, str]]:
    """A temporary data folder, the fake upstream and the hub (one uvicorn worker each, rate
    limit 0), provider and agent registered; yields (fake, hub, admin secret), then stops
    both and removes the folder."""
    data_dir = Path(tempfile.mkdtemp(prefix="aether-bench-stream-"))
    try:
        with harness.running([]) as servers:
            secret = harness.prepare_data(data_dir)
            fake_env = {
                "BENCH_FAKE_TOKENS": str(tokens),
                "BENCH_FAKE_INTERVAL_MS": str(interval_ms),
            }
            app = references.FAKE_UPSTREAM_APP
            servers.append(harness.start_server("fake", app, data_dir, fake_env))
            servers.append(harness.start_hub("hub", data_dir))
            for server in servers:
                harness.wait_ready(server)
            fake, hub = servers
            register_fake(hub, fake, secret)
            yield fake, hub, secret
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# --- the measurement ------------------------------------------------------------------------


def measure(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """Read the same stream R times on each of the three paths, interleaved, one at a time."""
    tokens, interval = args.tokens, args.interval_ms
    log(f"streaming: fake upstream {tokens} tokens every {interval:g} ms, {args.runs} runs/path")
    with fake_and_hub(tokens, interval) as (fake, hub, secret):
        session_id = create_sessions(hub, secret, 1)[0]
        messages = [{"role": "user", "content": "Say something."}]
        compat = {"messages": messages, "stream": True, "stream_options": {"include_usage": True}}
        sse_path = f"/api/v1/sessions/{session_id}/messages"
        sse_body = {"content": "Say something.", "stream": True}
        requests = {
            "direct": (
                fake.port,
                stream_request(fake.port, "/v1/chat/completions", "none", {"model": "m", **compat}),
                "openai",
            ),
            "sse": (hub.port, stream_request(hub.port, sse_path, secret, sse_body), "sse"),
            "compat": (
                hub.port,
                stream_request(
                    hub.port, "/v1/chat/completions", secret, {"model": FAKE_MODEL, **compat}
                ),
                "openai",
            ),
        }
        bound = tokens * interval / 1000 + 30

        async def drive() -> dict[str, list[StreamRun]]:
            connections: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
            runs: dict[str, list[StreamRun]] = {path: [] for path in requests}
            try:
                for index in range(args.runs + 1):  # run 0 is a warm-up, not recorded
                    for path, (port, request, kind) in requests.items():
                        if path not in connections:
                            connections[path] = await asyncio.open_connection("127.0.0.1", port)
                        reader, writer = connections[path]
                        run, keep = await asyncio.wait_for(
                            read_stream(reader, writer, request, kind), bound
                        )
                        if not keep:
                            writer.close()
                            del connections[path]
                        if not run.ok or len(run.arrivals) != tokens:
                            raise BenchError(
                                f"{PATH_LABELS[path]}: status {run.status}, "
                                f"{len(run.arrivals)}/{tokens} tokens, done={run.done} "
                                f"{run.error}"
                            )
                        if index:
                            runs[path].append(run)
                        await asyncio.sleep(0.02)  # let the hub store the turn, free the session
            finally:
                for _reader, writer in connections.values():
                    writer.close()
            return runs

        runs = harness.run_async(drive())
    return {
        "tokens": tokens,
        "interval_ms": interval,
        "runs": args.runs,
        "paths": streaming_figures(runs),
    }


def streaming_figures(runs: dict[str, list[StreamRun]]) -> dict[str, dict[str, float]]:
    """Per path, in ms: first token p50/p99, inter-token gap p50/p99, delivery latency of
    tokens 1.. (upstream emission -> client read) p50/p99, and the per-token delay against the
    direct path matched by index (see the module docstring)."""
    direct = runs["direct"]
    count = min(len(r.arrivals) for r in direct)
    # The direct path's mean arrival of token i after its own first token, over the runs.
    baseline = [
        sum(r.arrivals[i] - r.arrivals[0] for r in direct) / len(direct) for i in range(count)
    ]
    figures: dict[str, dict[str, float]] = {}
    for path, path_runs in runs.items():
        first = [r.arrivals[0] * 1e3 for r in path_runs]
        gaps = [(b - a) * 1e3 for r in path_runs for a, b in itertools.pairwise(r.arrivals)]
        delays = [
            (r.arrivals[i] - r.arrivals[0] - baseline[i]) * 1e3
            for r in path_runs
            for i in range(1, min(count, len(r.arrivals)))
        ]
        delivery = [d * 1e3 for r in path_runs for d in r.delivery[1:]]
        figures[path] = {
            "streams": len(path_runs),
            "delivery_p50_ms": percentile(delivery, 50),
            "delivery_p99_ms": percentile(delivery, 99),
            "ttft_p50_ms": percentile(first, 50),
            "ttft_p99_ms": percentile(first, 99),
            "gap_p50_ms": percentile(gaps, 50),
            "gap_p99_ms": percentile(gaps, 99),
            "delay_p50_ms": percentile(delays, 50),
            "delay_p99_ms": percentile(delays, 99),
        }
    return figures


def failed(_result: dict[str, Any]) -> bool:
    return False  # a broken stream raises BenchError while measuring


def count(result: dict[str, Any]) -> int:
    return sum(f["streams"] for f in result["paths"].values())


def tables(result: dict[str, Any]) -> list[Table]:
    paths = result["paths"]
    direct = paths["direct"]

    def added(f: dict[str, float], key: str) -> float:
        return f[key] - direct[key]

    def verdict(value: float, goal: float) -> str:
        return "ok" if value < goal else "OVER"

    per_path = [
        ("path", lambda p: PATH_LABELS[p]),
        (
            "first token p50 / p99 ms",
            lambda p: pair(paths[p]["ttft_p50_ms"], paths[p]["ttft_p99_ms"]),
        ),
        (
            "token delivery p50 / p99 ms",
            lambda p: pair(paths[p]["delivery_p50_ms"], paths[p]["delivery_p99_ms"], ".3f"),
        ),
        (
            "inter-token gap p50 / p99 ms",
            lambda p: pair(paths[p]["gap_p50_ms"], paths[p]["gap_p99_ms"], ".3f"),
        ),
        (
            "token delay vs direct p50 / p99 ms",
            lambda p: pair(paths[p]["delay_p50_ms"], paths[p]["delay_p99_ms"], ".3f"),
        ),
    ]
    hub_paths = [
        ("hub path", lambda p: PATH_LABELS[p]),
        (
            f"added first token ms (goal < {GOAL_FIRST_TOKEN_MS:g})",
            lambda p: (
                f"{added(paths[p], 'ttft_p50_ms'):+.2f} "
                + verdict(added(paths[p], "ttft_p50_ms"), GOAL_FIRST_TOKEN_MS)
            ),
        ),
        (
            f"added per-token latency p50 / p99 ms (goal < {GOAL_TOKEN_MS:g})",
            lambda p: (
                f"{added(paths[p], 'delivery_p50_ms'):+.3f} / "
                f"{added(paths[p], 'delivery_p99_ms'):+.3f} "
                + verdict(added(paths[p], "delivery_p50_ms"), GOAL_TOKEN_MS)
            ),
        ),
        (
            "added gap p50 / p99 ms",
            lambda p: (
                f"{added(paths[p], 'gap_p50_ms'):+.3f} / {added(paths[p], 'gap_p99_ms'):+.3f}"
            ),
        ),
        (
            "added index-matched delay p50 / p99 ms",
            lambda p: (
                f"{added(paths[p], 'delay_p50_ms'):+.3f} / {added(paths[p], 'delay_p99_ms'):+.3f}"
            ),
        ),
    ]
    title = (
        f"Streaming overhead ({result['tokens']} tokens every {result['interval_ms']:g} ms, "
        f"{result['runs']} runs per path, sequential, one keep-alive connection per path)"
    )
    notes = [
        "first token = request written -> first token event read (the hub SSE path includes "
        "planning and storing the turn); gap = between consecutive tokens of one stream; token "
        "delivery = for tokens i >= 1, the fake's emission time (CLOCK_MONOTONIC, in the token "
        "text) -> the client reading the event; token delay vs direct = for token i >= 1, (its "
        "arrival - the stream's first token arrival) - the same on the direct path, averaged "
        "(index-matched). added = hub percentile - direct percentile.",
    ]
    return [
        Table.of(title, per_path, list(paths)),
        Table.of("Streaming: what the hub adds", hub_paths, ["sse", "compat"], notes),
    ]
