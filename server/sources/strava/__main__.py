"""python -m server.sources.strava setup: the one-time authorization (server/sources/strava/setup_cli.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from server.sources.strava.setup_cli import setup


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "setup":
        print("usage: python -m server.sources.strava setup [--help]", file=sys.stderr)
        return 2
    return setup(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
