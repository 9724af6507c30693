"""``concurrency``: how many simultaneous SSE streams one hub worker holds on schedule.

What it measures
    The fake upstream of ``streaming`` (``--conc-tokens`` 30 tokens every
    ``--conc-interval-ms`` 100 ms) and the hub; sessions made beforehand in bulk, one per
    stream. For each count K in ``--streams`` (default 10, 25, 50, 100, 250, 500, 1000; none
    above ``--max-streams``) the client opens K connections at once, each posting a streaming
    message to its own session, and reads all K SSE streams to their end, the whole round
    bounded to the schedule + ``--slack`` seconds (streams still running then count as
    incomplete). Per K: the fraction of streams completed, time to first token p50/max, and the
    lateness of every token, arrival - (anchor + i x interval), p50/p99/max, where the anchor
    is the stream's earliest schedule-consistent start, min over i of (arrival_i - i x
    interval): the first token's arrival when that is on time, but it does not let tokens
    bunched behind a held-up first token look early; the delivery latency (emission ->
    arrival) p50/p99; plus the CPU share of the hub, the fake and the client (this process)
    during the round. A K "holds" when every stream completes and the p99 lateness is under
    ``--lateness-ms`` (100); once one K fails the larger ones are skipped (``--keep-going``
    tries them). After each round the bench waits until the hub is idle (generations outlive
    their clients). Last, the largest K is read directly from the fake: if that misses the
    goal, the fake or the client, not the hub, is the bottleneck. The soft RLIMIT_NOFILE is
    raised (up to the hard limit) before the servers start, which inherit it. Everything on
    loopback; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench import harness
from bench.harness import Context, Server, log, percentile
from bench.report import Table, num
from bench.streaming import StreamRun, create_sessions, fake_and_hub, read_stream, stream_request

NAME = "concurrency"
SMOKE = {
    "streams": [2, 4],
    "max_streams": 4,
    "conc_tokens": 3,
    "conc_interval_ms": 20.0,
    "slack": 5.0,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("concurrent streams")
    group.add_argument(
        "--streams",
        type=harness.positive_list,
        default=[10, 25, 50, 100, 250, 500, 1000],
        help="simultaneous stream counts to try (default 10,25,50,100,250,500,1000)",
    )
    group.add_argument(
        "--max-streams", type=int, default=1000, help="skip counts above this (default 1000)"
    )
    group.add_argument(
        "--conc-tokens", type=int, default=30, help="tokens per concurrent stream (30)"
    )
    group.add_argument(
        "--conc-interval-ms", type=float, default=100.0, help="their interval (100 ms)"
    )
    group.add_argument(
        "--lateness-ms", type=float, default=100.0, help="p99 lateness goal (100 ms)"
    )
    group.add_argument(
        "--slack", type=float, default=10.0, help="seconds allowed beyond a round's schedule (10)"
    )
    group.add_argument(
        "--keep-going",
        action="store_true",
        help="try every count, even after one failed to hold (by default the larger are skipped)",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.conc_tokens, args.max_streams) < 2:
        parser.error("--conc-tokens and --max-streams must be >= 2")
    if min(args.conc_interval_ms, args.lateness_ms, args.slack) <= 0:
        parser.error("--conc-interval-ms, --lateness-ms and --slack must be > 0")


async def concurrent_streams(
    port: int, requests: list[bytes], kind: str, bound: float
) -> list[StreamRun]:
    """Open one connection per request, all at once, and read every stream to its end
    (each bounded by ``bound`` seconds; a stream cut short stays incomplete)."""

    async def one(request: bytes) -> StreamRun:
        writer: asyncio.StreamWriter | None = None
        run = StreamRun(sent=time.perf_counter(), arrivals=[])
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            run, _keep = await read_stream(reader, writer, request, kind)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            if writer is not None:
                writer.close()
        return run

    tasks = [asyncio.ensure_future(one(request)) for request in requests]
    done, pending = await asyncio.wait(tasks, timeout=bound)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [t.result() if t in done else StreamRun(0.0, [], error="timed out") for t in tasks]


def concurrency_figure(
    runs: list[StreamRun],
    tokens: int,
    interval_ms: float,
    seconds: float,
    cpu: dict[str, float | None],
) -> dict[str, Any]:
    """Completion and lateness of K streams.

    Lateness of token i = its arrival - (anchor + i * interval), where the anchor is the
    stream's earliest schedule-consistent start, min over i of (arrival_i - i * interval). When
    the first token is on time that is the first token's arrival (the upstream never sends
    early), so this is ``arrival - (first token + i * interval)``; but when the first token is
    itself held up and the tokens behind it then arrive bunched, anchoring on it would make
    them look early (negative lateness) and hide the delay: anchored on the best-served token,
    the held-up ones count as late, and lateness is never negative."""
    complete = [r for r in runs if r.ok and len(r.arrivals) == tokens]
    lateness: list[float] = []
    for run in complete:
        offsets = [arrival * 1e3 - i * interval_ms for i, arrival in enumerate(run.arrivals)]
        anchor = min(offsets)
        lateness += [offset - anchor for offset in offsets]
    first = [r.arrivals[0] * 1e3 for r in complete]
    delivery = [d * 1e3 for r in complete for d in r.delivery]
    errors = sorted({r.error.splitlines()[0][:120] for r in runs if r.error})
    return {
        "streams": len(runs),
        "completed": len(complete),
        "completed_fraction": len(complete) / len(runs) if runs else 0.0,
        "ttft_p50_ms": percentile(first, 50),
        "ttft_max_ms": max(first, default=0.0),
        "late_p50_ms": percentile(lateness, 50),
        "late_p99_ms": percentile(lateness, 99),
        "late_max_ms": max(lateness, default=0.0),
        "delivery_p50_ms": percentile(delivery, 50),
        "delivery_p99_ms": percentile(delivery, 99),
        "seconds": seconds,
        "cpu_percent": cpu,
        "errors": errors[:3],
    }


def holds(figure: dict[str, Any], goal_ms: float) -> bool:
    return figure["completed"] == figure["streams"] and figure["late_p99_ms"] < goal_ms


def measure(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """K simultaneous hub SSE streams, each on its own session and connection, per K."""
    ks = sorted({k for k in args.streams if k <= args.max_streams}) or [args.max_streams]
    tokens, interval = args.conc_tokens, args.conc_interval_ms
    # client + hub in + hub out + upstream, per stream
    nofile = harness.raise_nofile(4 * max(ks) + 256)
    log(f"concurrency: {ks} streams of {tokens} tokens every {interval:g} ms (nofile {nofile})")
    bound = tokens * interval / 1000 + args.slack
    with fake_and_hub(tokens, interval) as (fake, hub, secret):
        log(f"concurrency: creating {max(ks)} sessions")
        sessions = create_sessions(hub, secret, max(ks))

        def hub_request(session_id: str) -> bytes:
            path = f"/api/v1/sessions/{session_id}/messages"
            return stream_request(hub.port, path, secret, {"content": "Go.", "stream": True})

        direct_request = stream_request(
            fake.port,
            "/v1/chat/completions",
            "none",
            {"model": "m", "messages": [{"role": "user", "content": "Go."}], "stream": True},
        )

        def round_(label: str, server: Server, requests: list[bytes], kind: str) -> dict[str, Any]:
            log(f"concurrency: {len(requests)} streams {label}")
            before = (hub.cpu_seconds(), fake.cpu_seconds(), harness.own_cpu())
            started = time.perf_counter()
            runs = harness.run_async(concurrent_streams(server.port, requests, kind, bound))
            seconds = time.perf_counter() - started
            after = (hub.cpu_seconds(), fake.cpu_seconds(), harness.own_cpu())
            cpu: dict[str, float | None] = {}
            for name, b, a in zip(("hub", "fake", "client"), before, after, strict=True):
                cpu[name] = None if a is None or b is None else 100 * (a - b) / seconds
            hub.check_alive()
            fake.check_alive()
            # Streams cut at the bound leave the hub working (a generation outlives its
            # client): wait until it is idle, so the next round starts clean.
            harness.wait_idle(hub)
            return concurrency_figure(runs, tokens, interval, seconds, cpu)

        round_("(warm-up through the hub)", hub, [hub_request(sessions[0])], "sse")
        rounds: list[dict[str, Any]] = []
        for k in ks:
            requests = [hub_request(s) for s in sessions[:k]]
            rounds.append(round_("through the hub", hub, requests, "sse"))
            if not holds(rounds[-1], args.lateness_ms) and not args.keep_going:
                break  # more streams will not hold either; --keep-going tries them all
        skipped = [k for k in ks if k > rounds[-1]["streams"]]
        direct = round_("direct to the fake upstream", fake, [direct_request] * max(ks), "openai")
    return {
        "tokens": tokens,
        "interval_ms": interval,
        "lateness_goal_ms": args.lateness_ms,
        "bound_s": bound,
        "nofile": nofile,
        "rounds": rounds,
        "skipped": skipped,
        "direct": direct,
    }


def failed(_result: dict[str, Any]) -> bool:
    return False  # not holding is a finding, not a failure; a dead server raises


def count(result: dict[str, Any]) -> int:
    return len(result["rounds"]) + (1 if result["direct"]["streams"] else 0)


def tables(result: dict[str, Any]) -> list[Table]:
    goal = result["lateness_goal_ms"]
    direct = result["direct"]
    records = [(f"{f['streams']} via hub SSE", f) for f in result["rounds"]]
    records.append((f"{direct['streams']} direct to fake", direct))

    def cpu(f: dict[str, Any]) -> str:
        return " / ".join(num(f["cpu_percent"][n], ".0f") for n in ("hub", "fake", "client"))

    columns = [
        ("streams", lambda r: r[0]),
        (
            "completed",
            lambda r: (
                f"{r[1]['completed']}/{r[1]['streams']} ({100 * r[1]['completed_fraction']:.0f}%)"
            ),
        ),
        (
            "first token p50 / max ms",
            lambda r: f"{r[1]['ttft_p50_ms']:,.0f} / {r[1]['ttft_max_ms']:,.0f}",
        ),
        (
            "lateness p50 / p99 / max ms",
            lambda r: (
                f"{r[1]['late_p50_ms']:.1f} / {r[1]['late_p99_ms']:.1f} / {r[1]['late_max_ms']:.1f}"
            ),
        ),
        (
            "delivery p50 / p99 ms",
            lambda r: f"{r[1]['delivery_p50_ms']:.1f} / {r[1]['delivery_p99_ms']:.1f}",
        ),
        ("CPU % hub / fake / client", lambda r: cpu(r[1])),
        (f"holds (p99 < {goal:g} ms)", lambda r: "yes" if holds(r[1], goal) else "NO"),
    ]
    held = [f["streams"] for f in result["rounds"] if holds(f, goal)]
    notes = [
        f"result: {f'holds {max(held)} streams' if held else 'holds none of the tried counts'} "
        f"(all complete, p99 lateness < {goal:g} ms); soft RLIMIT_NOFILE {result['nofile']}",
    ]
    if result["skipped"]:
        notes.append(
            "not tried (a smaller count already failed; --keep-going tries them): "
            + ", ".join(map(str, result["skipped"]))
        )
    for f in [*result["rounds"], direct]:
        if f["errors"]:
            notes.append(f"errors at {f['streams']}: " + "; ".join(f["errors"]))
    if not holds(direct, goal):
        notes.append(
            f"the fake upstream + client alone miss the goal at {direct['streams']} streams: "
            "above that the bench, not the hub, is the bottleneck"
        )
    for f in result["rounds"]:
        busy = [n for n in ("fake", "client") if (f["cpu_percent"][n] or 0) > 90]
        if busy and not holds(f, goal):
            notes.append(f"at {f['streams']} streams the {' and '.join(busy)} used > 90% of a core")
    notes.append(
        "lateness = arrival of token i - (anchor + i x interval), anchor = min_i(arrival_i - "
        "i x interval); delivery = upstream emission -> client read; first token counts from "
        "the request being written; CPU % = process CPU time / round wall time (100 = one core)."
    )
    title = (
        f"Concurrent SSE streams ({result['tokens']} tokens every {result['interval_ms']:g} ms "
        f"per stream, one session and connection each, rounds bounded to "
        f"{result['bound_s']:g} s)"
    )
    return [Table.of(title, columns, records, notes)]
