"""What a person cloning the repository reads points at things the repository has."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO, require_tool


def tracked_text() -> dict[str, str]:
    git = require_tool("git")
    names = subprocess.run([git, "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = (REPO / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
    return out


def test_nothing_refers_to_notes_outside_the_repository() -> None:
    pattern = re.compile(r"shared/(notes|CONTRACT|STYLE)|\bissue [0-9]+\b")
    hits = [
        f"{name}:{n}"
        for name, text in tracked_text().items()
        for n, line in enumerate(text.splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_every_docs_page_named_exists() -> None:
    named = {m for text in tracked_text().values() for m in re.findall(r"\bdocs/[\w./-]+\.md\b", text)}
    assert "docs/mqtt.md" in named  # config.yaml's pointer for the MQTT set-ups
    missing = sorted(p for p in named if not (REPO / p).is_file())
    assert missing == []


def test_readme_sections_named_in_config_yaml_exist() -> None:
    named = re.findall(r'README, "([^"]+)"', (REPO / "config.yaml").read_text())
    assert named, "config.yaml points at README sections"
    headings = [
        line.lstrip("#").strip() for line in (REPO / "README.md").read_text().splitlines() if line.startswith("#")
    ]
    for name in named:
        assert any(name in h for h in headings), f'config.yaml points at README "{name}", which has no such section'
