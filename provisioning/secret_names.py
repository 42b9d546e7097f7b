"""Prints the ${NAME}s a config.yaml uses in its values, one per line (a ${NAME} in a comment is not used).

provision.sh runs it on your computer (which secrets to send from your environment) and on the Pi (which
of them still have no value). Exit status 2 when the file is not YAML.

    python provisioning/secret_names.py CONFIG
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from server.config import secret_names


def main(argv: list[str]) -> int:
    try:
        doc = yaml.safe_load(Path(argv[1]).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        print(f"secret_names: cannot read {argv[1]}: {err}".splitlines()[0], file=sys.stderr)
        return 2
    for name in sorted(secret_names(doc)):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
