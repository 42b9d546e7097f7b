"""python -m server.display probe [--config PATH]: which screen backends work on this machine (switches nothing)."""

from __future__ import annotations

import argparse
import os
import sys

from server.config import ConfigError, DisplayConfig, load_config
from server.display.backends import probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.display", description="which screen backends work on this machine"
    )
    parser.add_argument("command", choices=["probe"])
    parser.add_argument("--config", default="config.yaml", help="read display settings from here (if it exists)")
    args = parser.parse_args(argv)
    config = DisplayConfig()
    if os.path.exists(args.config):
        try:
            # demo=True: unset ${SECRETS} become placeholders; only the display section is used here.
            config = load_config(args.config, demo=True).display
        except ConfigError as err:
            print(f"config error: {err}", file=sys.stderr)
            return 2
    lines = probe(config)
    print("Display backends on this machine (* = configured in display.backend):")
    print("\n".join(lines))
    return 0 if any(" works:" in line for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
