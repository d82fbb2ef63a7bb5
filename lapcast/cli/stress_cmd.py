"""``lapcast stress``: a synthetic field through the engine, Mosquitto and the consumers.

Starts a private Mosquitto (unless ``--broker``), the three consumers (``lapcast
consume``) and the replay engine (``lapcast replay``) over a generated field, shows
live progress on stderr, and reports: events/s sustained, latency from engine publish
to the first state message reflecting each event (p50/p99/max), each consumer's lag,
each process's peak memory, events lost and double-counted (checked against the
engine's journal: both must be 0), and ``mosquitto_pub``'s messages/s on the same
broker for comparison. Exit status 0 when nothing was lost or double-counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from consumers.registry import ALL_BUILTIN
from lapcast.cli.common import add_broker_options, broker_settings, writable_dir
from lapcast.stress import Progress, StressReport, StressSettings, run_stress
from simulator.synth import SynthSpec, add_synth_options, spec_from_options

__all__ = ["register"]

# A Le Mans-sized field that stays whole (no retirements): a steady event rate.
DEFAULT_FIELD = SynthSpec(cars=60, laps=1000, seed=1, retirements=0)


def _rate(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: events per second above 0, or max")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stress", help="stress-test the engine, broker and consumers with a synthetic field",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_synth_options(parser, defaults=DEFAULT_FIELD)
    parser.add_argument("--rate", type=_rate, default=20_000.0, metavar="EVENTS_PER_S|max",
                        help="events/s the engine aims at, on average over the session "
                             "(default 20000), or max")
    parser.add_argument("--batch", type=int, default=64, metavar="N",
                        help="engine: up to N events per message (default 64)")
    parser.add_argument("--window", type=int, default=64, metavar="N",
                        help="engine: QoS 1 messages in flight (default 64, as "
                             "mosquitto_pub gets)")
    parser.add_argument("--linger-ms", type=float, default=3.0, metavar="MS",
                        help="engine: once an event falls due, wait up to MS ms for later "
                             "ones to share its message (default 3; 0: each instant's "
                             "events in a message of their own). Ignored at --rate max, "
                             "where batches are full anyway")
    parser.add_argument("--publish-ms", type=int, default=20, metavar="N",
                        help="consumers: publish the state at most every N ms (default 20)")
    parser.add_argument("--consumers", default=",".join(ALL_BUILTIN), metavar="A,B",
                        help=f"consumers to run (default {','.join(ALL_BUILTIN)})")
    parser.add_argument("--pub-messages", type=int, default=20_000, metavar="N",
                        help="mosquitto_pub baseline: N event messages (default 20000; 0 skips)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S",
                        help="give up after S seconds (default 600)")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="keep the run's files here (field, journal, logs, checkpoints)")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    parser.add_argument("--no-progress", action="store_true", help="no live display")
    add_broker_options(parser)
    # No broker given: a private Mosquitto on a free port.
    parser.set_defaults(broker=None, handler=run)
    for action in parser._actions:
        if action.dest == "broker":
            action.help = ("mqtt://HOST:PORT or mqtts://HOST:PORT (default: a private "
                           "Mosquitto from broker-config/dev.conf on a free port)")


def run(args: argparse.Namespace) -> int:
    if args.workdir is not None:
        writable_dir(args.workdir, what="work folder (--workdir)")
    settings = StressSettings(
        spec=spec_from_options(args), rate=args.rate, batch=args.batch,
        linger_ms=args.linger_ms,
        publish_ms=args.publish_ms, window=args.window,
        broker=broker_settings(args, check_files=True) if args.broker else None,
        consumers=tuple(c.strip() for c in args.consumers.split(",") if c.strip()),
        workdir=args.workdir, timeout_s=args.timeout, pub_messages=args.pub_messages,
    )
    err = Console(stderr=True)
    if args.no_progress:
        report = run_stress(settings)
    else:
        with Live(console=err, refresh_per_second=4, transient=True) as live:
            report = run_stress(settings, on_progress=lambda p: live.update(_progress(p)))
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report.to_dict())).decode())
        sys.stdout.write("\n")
    else:
        print_report(report, Console())
    if not report.ok and report.workdir:
        err.print(f"[red]the run's files (field, journal, logs) are kept in {report.workdir}")
    return 0 if report.ok else 1


# --- rendering ---------------------------------------------------------------------------

def _progress(p: Progress) -> Group:
    head = Text(f"{p.phase}  {p.elapsed_s:5.1f} s  engine {p.received:,}/{p.total:,} events  "
                f"{p.rate_1s:,.0f} events/s (last 1 s)")
    table = Table(show_edge=False, pad_edge=False)
    for col in ("consumer", "state", "seq", "behind", "last latency", "peak RSS"):
        table.add_column(col, justify="left" if col in ("consumer", "state") else "right")
    for name, c in p.consumers.items():
        latency = "" if c["last_latency_ms"] is None else f"{c['last_latency_ms']:.1f} ms"
        rss = "" if c["rss_mb"] is None else f"{c['rss_mb']:.0f} MB"
        table.add_row(name, str(c["state"]), f"{c['seq']:,}", f"{c['lag_events']:,}",
                      latency, rss)
    return Group(head, table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}x"


def _cpu_table(report: StressReport) -> Table:
    """CPU per event of every process over the run's events, beside the bare work."""
    bare = report.bare
    title = "CPU per event, first to last event (µs)"
    if bare is not None:
        title += (f"; bare, in the harness over the journal's {bare.events:,} events: "
                  f"decode {bare.decode_us:.2f}, encode {bare.encode_us:.2f}")
    table = Table(title=title, title_justify="left")
    for col in ("", "CPU µs/event", "window s", "bare µs/event", "of which fold", "overhead"):
        table.add_column(col, justify="right" if col else "left")
    e = report.engine
    table.add_row("engine", _us(e.cpu_us_per_event), _s(e.cpu_window_s),
                  _us(e.bare_us_per_event), "", _x(e.overhead))
    for c in report.consumers:
        table.add_row(c.name, _us(c.cpu_us_per_event), _s(c.cpu_window_s),
                      _us(c.bare_us_per_event), _us(c.bare_fold_us_per_event),
                      _x(c.overhead))
    for name, us in report.cpu_others_us_per_event.items():
        table.add_row(name, _us(us), _s(e.cpu_window_s), "", "", "")
    return table


def print_report(report: StressReport, console: Console) -> None:
    target = "max" if report.rate_target is None else f"{report.rate_target:,.0f} events/s"
    speed = "max" if report.speed is None else f"{report.speed:,.1f}x"
    console.print(f"[bold]lapcast stress[/] {report.spec}: {report.events:,} events "
                  f"(generated in {report.generate_s:.1f} s), target {target} (speed {speed}), "
                  f"batch {report.batch}, window {report.window}, linger "
                  f"{report.linger_ms:g} ms, consumers publish every {report.publish_ms} ms, "
                  f"broker {report.broker}")
    e = report.engine
    rates = Table(title="Throughput", title_justify="left")
    for col in ("", "events/s sustained", "peak events/s (1 s)", "events", "messages", "seconds"):
        rates.add_column(col, justify="right" if col else "left")
    rates.add_row("engine", f"{e.events_per_s:,.0f}", f"{e.peak_events_per_s_1s:,.0f}",
                  f"{e.events:,}", f"{e.messages:,}", f"{e.seconds:.2f}")
    pub = report.mosquitto_pub
    if pub is not None:
        rates.add_row("mosquitto_pub (1 event a message)", f"{pub.messages_per_s:,.0f}", "",
                      f"{pub.messages:,}", f"{pub.messages:,}", f"{pub.seconds:.2f}")
    console.print(rates)
    table = Table(title="Consumers", title_justify="left")
    table.add_column("")
    for c in report.consumers:
        table.add_column(c.name, justify="right")
    table.add_column("all", justify="right")
    lat = report.latency
    rows: list[tuple[str, list[str], str]] = [
        ("events applied", [f"{c.applied:,}" for c in report.consumers], ""),
        ("lost / double-counted", [f"{c.lost} / {c.double_counted}" for c in report.consumers],
         f"{report.lost} / {report.double_counted}"),
        ("state = fold of the journal", ["yes" if c.state_matches_journal_fold else "[red]NO[/]"
                                         for c in report.consumers], ""),
        ("latency p50", [_ms(c.latency.p50) for c in report.consumers], _ms(lat.p50)),
        ("latency p99", [_ms(c.latency.p99) for c in report.consumers], _ms(lat.p99)),
        ("latency max", [_ms(c.latency.max) for c in report.consumers], _ms(lat.max)),
        ("max events behind the engine", [f"{c.max_behind_events:,}"
                                          for c in report.consumers], ""),
        ("caught up after the last publish",
         [_ms(c.caught_up_after_ms) for c in report.consumers], ""),
        ("events/s folded", ["-" if c.events_per_s is None else f"{c.events_per_s:,.0f}"
                             for c in report.consumers], ""),
        ("state messages", [f"{c.state_messages:,}" for c in report.consumers], ""),
        ("peak RSS", [_mb(c.peak_rss_mb) for c in report.consumers], ""),
        ("CPU", ["-" if c.cpu_s is None else f"{c.cpu_s:.1f} s" for c in report.consumers], ""),
    ]
    for label, cells, total in rows:
        table.add_row(label, *cells, total)
    console.print(table)
    console.print(_cpu_table(report))
    console.print(
        f"Peak memory: engine {_mb(e.peak_rss_mb)}, mosquitto {_mb(report.broker_peak_rss_mb)}"
        f", " + ", ".join(f"{c.name} {_mb(c.peak_rss_mb)}" for c in report.consumers)
        + f"; CPU: engine {e.cpu_s or 0:.1f} s, probe {report.probe_cpu_s:.1f} s, "
        f"recorder {report.recorder_cpu_s:.1f} s"
    )
    console.print(
        f"Journal: {report.journal_events:,} events, "
        f"{'identical to the generated log' if report.journal_matches_log else '[red]DIFFERS'}"
        f"; probe: {e.lost_at_probe} lost, {e.redelivered_at_probe} redelivered (QoS 1)"
    )
    verdict = ("[green]OK[/]: 0 lost, 0 double-counted" if report.ok else
               f"[red]FAILED[/]: {report.lost} lost, {report.double_counted} double-counted")
    console.print(f"{verdict} ({report.wall_s:.0f} s)")
    for error in report.errors:
        console.print(f"[red]{error}")
