"""The `clinvk` command: `clinvk serve [--host] [--port] [--config] [--demo]`, and
`clinvk mcp [--transport stdio|http] [--host] [--port] [--path] [--expose-health]`."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Any


class _Terminated(BaseException):
    """SIGTERM arrived; unwinding lets the demo remove its folder before the process ends."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinvk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--config", help="config file (default ~/.clinvk/config.yaml)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="run the real CLIs against clinvk's own stand-in model API: canned answers, "
        "labelled as such, no account or network needed",
    )
    mcp = sub.add_parser("mcp", help="run the MCP server (stdio or HTTP)")
    mcp.add_argument("--transport", choices=["stdio", "http"],
                     help="stdio (default, for a local client) or http")
    mcp.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    mcp.add_argument("--port", "-p", type=int, help="HTTP port (default 8081)")
    mcp.add_argument("--path", help="HTTP endpoint path (default /mcp)")
    mcp.add_argument("--expose-health", action=argparse.BooleanOptionalAction, default=None,
                     help="also serve GET /health over HTTP (default off)")
    mcp.add_argument("--config", help="config file (default ~/.clinvk/config.yaml)")
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `clinvk` console script."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        from clinvk import __version__

        print(__version__)
        return 0
    from clinvk.adapters.config.yaml_config import ConfigError, load_config

    if args.command == "mcp":
        return _mcp(args)
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["server.host"] = args.host
    if args.port is not None:
        overrides["server.port"] = args.port
    try:
        with contextlib.ExitStack() as stack:
            demo = None
            if args.demo:
                from clinvk.entrypoints.demo import start_demo

                # uvicorn ends by raising the SIGTERM it caught again; by default that kills
                # the process on the spot, before the demo's folder is removed.
                previous = signal.signal(signal.SIGTERM, _terminated)
                stack.callback(signal.signal, signal.SIGTERM, previous)
                demo = start_demo(stack)
                if demo is None:
                    return 2
                overrides.update(demo.overrides)
            try:
                config = load_config(args.config, overrides=overrides)
            except ConfigError as exc:
                print(f"clinvk: {exc}", file=sys.stderr)
                return 2
            from clinvk.entrypoints.server import serve

            return serve(config, demo=demo)
    except _Terminated:
        # Cleaned up; now end the way a SIGTERM ends a process, as without --demo.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return 128 + signal.SIGTERM


def _mcp(args: argparse.Namespace) -> int:
    from clinvk.adapters.config.yaml_config import ConfigError, load_config

    overrides = {
        "mcp.transport": args.transport,
        "mcp.host": args.host,
        "mcp.port": args.port,
        "mcp.http_path": args.path,
        "mcp.expose_health": args.expose_health,
    }
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"clinvk: {exc}", file=sys.stderr)
        return 2
    from clinvk.entrypoints.mcp import run_mcp

    return run_mcp(config, transport=config.mcp.transport,
                   expose_health=config.mcp.expose_health)


if __name__ == "__main__":
    sys.exit(main())
