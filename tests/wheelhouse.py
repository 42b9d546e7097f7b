"""What the provisioning tests install from: an offline wheelhouse, a snapshot of the working tree, a Pi's config."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

from tests import nspawn
from tests.conftest import REPO

# Debian bookworm on a Pi: Python 3.11, glibc 2.36, so any manylinux wheel up to 2.36 (pip does not widen a
# --platform tag by itself).
BOOKWORM_PYTHON = "3.11"
ARM64_PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)] + ["manylinux2014_aarch64"]


def _wheel_tag(dist: md.Distribution) -> str:
    tags = [
        line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines() if line[:4] == "Tag:"
    ]
    parts = [t.split("-") for t in tags]
    return "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3))


def _repack(dist: md.Distribution, dest: Path) -> None:
    """A wheel from an installed distribution's files (its RECORD), so pip can install it offline."""
    # The dist-info directory as installed (e.g. pyyaml-6.0.4.dist-info for "PyYAML"): the wheel's name and its
    # RECORD must use that same spelling, or an older pip sees two .dist-info directories.
    info_dir = next(str(f).split("/", 1)[0] for f in dist.files or () if ".dist-info/" in str(f))
    name = info_dir.removesuffix(".dist-info").rsplit("-", 1)[0]
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    buf = io.BytesIO()
    record: list[tuple[str, str, str]] = []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in dist.files or ():
            arc = str(f)
            if arc.startswith("..") or "__pycache__" in arc or arc.endswith(".pyc"):
                continue
            if ".dist-info/" in arc and arc.rsplit("/", 1)[1] in skip:
                continue
            data = Path(f.locate()).read_bytes()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append((arc, f"sha256={digest}", str(len(data))))
        record_name = f"{info_dir}/RECORD"
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([*record, (record_name, "", "")])
        zf.writestr(record_name, out.getvalue())
    (dest / f"{name}-{dist.version}-{_wheel_tag(dist)}.whl").write_bytes(buf.getvalue())


def build_wheelhouse(dest: Path, pyproject: Path) -> None:
    """Every dependency in pyproject.toml (and theirs), from this interpreter's site-packages."""
    dest.mkdir()
    todo = list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        if re.search(r"extra\s*==", req):
            continue
        name = re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0]
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            if ";" in req:  # a marker for another platform or Python
                continue
            raise
        todo.extend(dist.requires or [])
        _repack(dist, dest)


def arm64_requirements(pyproject: Path, extras: tuple[str, ...] = ()) -> list[str]:
    """The project's dependencies (and those of `extras`, and its build backend) as an aarch64 Linux would pick
    them: markers evaluated for that machine, since pip download evaluates them for this one."""
    project = tomllib.loads(pyproject.read_text())
    reqs = list(project["project"]["dependencies"])
    for extra in extras:
        reqs += project["project"]["optional-dependencies"][extra]
    if extras:
        reqs += project["build-system"]["requires"]  # pip install -e . builds the project with it
    env = {"platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux"}
    picked = []
    for text in reqs:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            picked.append(str(req))
    return sorted(set(picked))


def arm64_wheelhouse(pyproject: Path, extras: tuple[str, ...] = ()) -> Path:
    """Wheels for a Debian bookworm arm64 machine, resolved by pip for that platform (wheels only: a missing one
    fails here, by name) and downloaded from the package index once; cached beside the root file systems,
    keyed by what was asked for, so later runs are offline."""
    reqs = arm64_requirements(pyproject, extras)
    key = hashlib.sha256("\n".join([BOOKWORM_PYTHON, *ARM64_PLATFORMS, *reqs]).encode()).hexdigest()[:16]
    dest = nspawn.cache_dir() / f"wheels-arm64-{key}"
    if dest.is_dir():
        return dest
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    platforms = [arg for platform in ARM64_PLATFORMS for arg in ("--platform", platform)]
    pip = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:"]
    run = subprocess.run(
        [*pip, "--python-version", BOOKWORM_PYTHON, "--implementation", "cp", *platforms, "-d", str(tmp), *reqs],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if run.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"pip download for aarch64 failed ({run.returncode}):\n{run.stderr[-3000:]}")
    os.replace(tmp, dest)
    return dest


def snapshot_repo(dest: Path) -> Path:
    """A copy of the working tree to provision from: other edits to the checkout during the test cannot
    then turn the second run into a first one."""
    ignore = shutil.ignore_patterns(".git", ".venv", "var", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def write_pi_config(path: Path, server_port: int, comment: str, **more: Any) -> None:
    """The config a provisioned test machine gets: a LAN sensor whose token is a secret, no screen switching,
    and `more` sections. `comment` is its first line: a ${NAME} there is only a comment, never a secret."""
    path.write_text(
        f"# {comment}\n"
        + yaml.safe_dump(
            {
                "server": {"host": "127.0.0.1", "port": server_port},
                "timezone": "Europe/Stockholm",
                "remote_sensors": [{"id": "balcony", "name": "Balcony", "token": "${BALCONY_TOKEN}"}],
                "display": {"backend": "none"},
                **more,
            },
            sort_keys=False,
        )
    )
