"""The `clinvk` command: `clinvk serve [--host] [--port] [--config]`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinvk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--config", help="config file (default ~/.clinvk/config.yaml)")
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

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["server.host"] = args.host
    if args.port is not None:
        overrides["server.port"] = args.port
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"clinvk: {exc}", file=sys.stderr)
        return 2
    from clinvk.entrypoints.server import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
