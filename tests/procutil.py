"""Start `python -m server` as a real process on a free loopback port and wait until it answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO, free_port


class ServerProcess:
    def __init__(
        self,
        tmp_path: Path,
        doc: dict[str, Any] | None = None,
        *,
        demo: bool = False,
        env: dict[str, str] | None = None,
        scheme: str = "http",
    ) -> None:
        self.port = free_port()
        self.tmp_path = tmp_path
        doc = {"data_dir": str(tmp_path / "var"), **(doc or {})}
        self.config_path = tmp_path / f"config-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(doc))
        self.scheme = scheme
        args = [sys.executable, "-m", "server", "--config", str(self.config_path), "--port", str(self.port)]
        if demo:
            args.append("--demo")
        self.log_path = tmp_path / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env=full_env)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 20, context: Any = None) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1, context=context) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not answer in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
