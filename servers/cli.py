"""The ``concert`` command line: ``concert tango up | status | down``.

Each subcommand is a function ``(args) -> exit code`` registered by ``_add_*``; a new one
(``concert demo``) is a parser in :func:`build_parser` and a function.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from servers import beamline
from servers.beamline import BeamlineError, DownReport, Report

Command = Callable[[argparse.Namespace], int]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


def format_report(report: Report, with_logs: bool = False) -> str:
    """The server/device/State table of an ``up`` or ``status`` report."""
    rows = []
    for server in report.servers:
        note = server.action + (f" in {server.seconds:.1f} s" if server.seconds else "")
        devices = server.devices or [beamline.DeviceReport("-", "-", "-")]
        for index, device in enumerate(devices):
            first = index == 0
            row = [server.name if first else "", str(server.pid or "-") if first else "",
                   device.name, device.tango_class, device.state, note if first else ""]
            if with_logs:
                row.append(server.log or "-" if first else "")
            rows.append(row)
    header = ["SERVER", "PID", "DEVICE", "CLASS", "STATE", "WHAT"]
    if with_logs:
        header.append("LOG")
    lines = [f"TANGO_HOST={report.tango_host}  database: {report.database}",
             f"beamline: {report.config}",
             f"state and logs: {report.state_dir}", "", _table(rows, header)]
    if report.problems:
        lines += ["", "PROBLEMS:", *(f"- {problem}" for problem in report.problems)]
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"concert: {message}", file=sys.stderr)
    return 1


def tango_up(args: argparse.Namespace) -> int:
    try:
        report = beamline.up(args.config, args.state_dir, timeout=args.timeout)
    except BeamlineError as error:
        return _fail(f"refused: {error}")
    print(format_report(report))
    if not report.ok:
        return _fail(f"{len(report.problems)} problem(s); the logs are in {report.state_dir}")
    print(f"\nbeamline up in {report.seconds:.1f} s")
    return 0


def tango_status(args: argparse.Namespace) -> int:
    try:
        report = beamline.status(args.state_dir, config=args.config)
    except BeamlineError as error:
        return _fail(str(error))
    print(format_report(report, with_logs=True))
    return 0 if report.ok else 3


def tango_down(args: argparse.Namespace) -> int:
    try:
        report: DownReport = beamline.down(args.state_dir)
    except BeamlineError as error:
        return _fail(str(error))
    if not report.stopped and not report.gone:
        print(f"nothing started by concert on TANGO_HOST={report.tango_host}")
    for name, pid in report.stopped.items():
        print(f"stopped {name} (pid {pid})")
    for name in report.gone:
        print(f"{name} had already ended")
    return 0


def _add_tango(commands: argparse._SubParsersAction) -> None:
    tango = commands.add_parser(
        "tango", help="run the beamline's Tango servers",
        description="The beamline on the Tango database named by TANGO_HOST "
                    f"(default localhost:{beamline.DEFAULT_PORT}; the embedded database is "
                    "started when none answers on this machine).")
    actions = tango.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", help="PID records and logs (default: CONCERT_STATE_DIR "
                                            "or ~/.local/state/concert)")
    up = actions.add_parser("up", parents=[common], help="load the beamline and start it")
    up.add_argument("--config", help="beamline file (dsconfig JSON; default: the simulated "
                                     "beamline tango_db/beamline.json)")
    up.add_argument("--timeout", type=float, default=60.0,
                    help="seconds each server may take to answer (default 60)")
    up.set_defaults(run=tango_up)
    status = actions.add_parser("status", parents=[common], help="servers, devices, State")
    status.add_argument("--config", help="beamline file (default: the one `up` used)")
    status.set_defaults(run=tango_status)
    down = actions.add_parser("down", parents=[common], help="stop what `up` started")
    down.set_defaults(run=tango_down)


def _add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", add_help=False,
        help="run the demo tomography on a simulated beamline (options: concert demo --help)")
    demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    demo.set_defaults(run=lambda args: _run_demo(args.demo_args))


def _run_demo(argv: list[str]) -> int:
    from experiments.demo import main as demo_main  # experiments is only needed here

    return demo_main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The ``concert`` parser: one ``_add_*`` per subcommand."""
    parser = argparse.ArgumentParser(prog="concert", description="Concert on Tango.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_tango(commands)
    _add_demo(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``concert`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:  # the demo parses its own options (concert demo --help)
        return _run_demo(argv[1:])
    args = build_parser().parse_args(argv)
    command: Command = args.run
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
