"""The printed lines of ``bench/delivery.py``: each figure, its ratios to the reference
clients and the targets of the issue marked met or not."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import million
from references import References

if TYPE_CHECKING:
    from delivery_client import Options

    from delivery import Figures

#: The targets of the issue, as same-run ratios to the reference clients (bench/references.py).
TARGETS = {
    "sqlite drain": (("nodemailer", 1.5), ("lean-asyncio", 0.5)),
    "postgresql drain": (("nodemailer", 1.2),),
    "sqlite end-to-end": (("nodemailer", 1.0),),
    "postgresql end-to-end": (("nodemailer", 1.0),),
}
TARGET_ACCEPT_MSG_S = 10_000
TARGET_US_PER_MSG = 120
TARGET_RSS_MIB = 150


def mib(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:,.0f} MiB"


def verdict(got: float, target: float, *, at_most: bool = False) -> str:
    """``met``, or ``NOT met`` with how far ``got`` is from ``target`` (as a share of it)."""
    ok = got <= target if at_most else got >= target
    if ok:
        return "met"
    return f"NOT met, {(got - target) / target:+.0%}"


def versus(name: str, rate: float, refs: References) -> str:
    """``rate`` as ratios to the references, with the issue's targets checked."""
    parts = []
    wanted = dict(TARGETS.get(name, ()))
    for ref in ("nodemailer", "lean-asyncio", "smtp-source", "smtplib"):
        base = refs.rates.get(ref)
        if not base:
            continue
        text = f"{rate / base:.2f}x {ref}"
        if ref in wanted:
            text += f" [target {wanted[ref]:.1f}x: {verdict(rate / base, wanted[ref])}]"
        parts.append(text)
    return "; ".join(parts)


def cpu_text(cpu: dict[str, float], name: str) -> str:
    if not cpu:
        return "n/a"
    database = ""
    if cpu.get("database_cores"):
        database = (
            f", PostgreSQL server {cpu['database_cores']:.2f} "
            f"({cpu['database_us_per_msg']:,.0f} us/msg)"
        )
    return (
        f"{name} {cpu['process_cores']:.2f} cores ({cpu['process_us_per_msg']:,.0f} us/msg), "
        f"client {cpu['client_cores']:.2f}, sink {cpu['sink_cores']:.2f}{database}, "
        f"machine {cpu['machine_busy']:.0%} busy"
    )


def report(f: Figures, opts: Options, refs: References) -> None:
    db = f.database
    ran = opts.phases
    accept_ok = verdict(f.accept_msg_s, TARGET_ACCEPT_MSG_S)
    if ran & {"accept", "drain"}:
        print(
            f"{db} accept {f.accept_msg_s:,.0f} msg/s  ({f.count:,} messages of "
            f"{f.message_bytes:,.0f} B in {f.accept_seconds:.2f} s, {opts.clients} clients, "
            f"batches of {opts.batch}) [target {TARGET_ACCEPT_MSG_S:,} msg/s: {accept_ok}]"
        )
    if "drain" in ran:
        print(
            f"{db} drain {f.drain_msg_s:,.0f} msg/s  {versus(f'{db} drain', f.drain_msg_s, refs)}"
            f"  (first attempt to last outcome {f.drain_seconds:.2f} s; "
            f"{f.drain_wall_msg_s:,.0f} msg/s from process start, "
            f"{f.worker_start_seconds:.2f} s to the first attempt; "
            f"worker --count {opts.worker_tasks} --processes {opts.worker_processes})"
        )
    serve_workers = "default" if opts.serve_workers is None else str(opts.serve_workers)
    if "e2e" in ran:
        print(
            f"{db} end-to-end {f.e2e_msg_s:,.0f} msg/s  "
            f"{versus(f'{db} end-to-end', f.e2e_msg_s, refs)}  (first POST to last sent "
            f"{f.e2e_seconds:.2f} s; accepted alongside at {f.e2e_accept_msg_s:,.0f} msg/s; "
            f"serve --workers {serve_workers}, worker processes "
            f"{'default' if opts.serve_processes is None else opts.serve_processes})"
        )
    rss_ok = (
        "met"
        if f.worker_peak_rss_kb is not None and f.worker_peak_rss_kb / 1024 < TARGET_RSS_MIB
        else "NOT met"
    )
    if "drain" in ran:
        print(
            f"{db} worker peak RSS {mib(f.worker_peak_rss_kb)} [target < {TARGET_RSS_MIB} MiB: "
            f"{rss_ok}]  (serve --workers 0: {mib(f.serve_peak_rss_kb)}, serve with workers: "
            f"{mib(f.serve_with_workers_peak_rss_kb)})"
        )
    print(f"{db} smtp-sink received {f.sink_received:,} messages")
    us = f.drain_cpu.get("process_us_per_msg")
    if us is not None:
        cpu_ok = verdict(us, TARGET_US_PER_MSG, at_most=True)
        print(f"{db} worker cpu {us:,.0f} us/msg [target <= {TARGET_US_PER_MSG} us: {cpu_ok}]")
    print(
        f"{db} cpu  accept: {cpu_text(f.accept_cpu, 'serve')};  drain: "
        f"{cpu_text(f.drain_cpu, 'worker')};  end-to-end: {cpu_text(f.e2e_cpu, 'serve')}"
    )
    if f.million is not None:
        print(f"{db} million-queued {million.summary(f.million, TARGET_RSS_MIB)}")
    for problem in f.problems:
        print(f"{db} PROBLEM: {problem}")
    sys.stdout.flush()
