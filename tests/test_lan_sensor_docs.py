"""The LAN-sensor documentation a user copies from works: the README's curl command, its humidity-only body, the
ESPHome example's fields, and the answers its table promises, against the real `python -m server`."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from server.readings.body import FIELDS
from tests.conftest import REPO, require_tool
from tests.procutil import ServerProcess

TOKEN = "b4lcony-t0ken-for-the-docs-test"


def lan_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## LAN sensors")
    return text[start : text.index("\n## ", start + 1)]


def blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("lan")
    doc = {"remote_sensors": [{"id": "balcony", "name": "Balcony", "token": "${BALCONY_TOKEN}"}]}
    srv = ServerProcess(tmp, doc, env={"BALCONY_TOKEN": TOKEN})
    srv.wait_ready()
    yield srv
    srv.stop()


def post(server: ServerProcess, body: Any, token: str = TOKEN, sensor: str = "balcony") -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{server.url}/api/sensors/{sensor}/readings",
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )


def shown(server: ServerProcess) -> dict[str, Any]:
    with urllib.request.urlopen(server.url + "/api/state", timeout=2) as r:
        return json.load(r)["topics"]["sensor/balcony"]


def test_the_curl_command_as_written(server: ServerProcess) -> None:
    bash = require_tool("bash")
    require_tool("curl")
    (command,) = [b for b in blocks(lan_section(), "sh") if "curl" in b]
    assert "http://homeboard.local:8080" in command
    command = command.replace("http://homeboard.local:8080", server.url)
    proc = subprocess.run(
        [bash, "-c", f"set -euo pipefail; {command.strip()} --fail-with-body --silent --show-error"],
        env={"BALCONY_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert json.loads(proc.stdout)["stored"] is True
    data = shown(server)["data"]
    assert (data["temperature_c"], data["humidity_pct"], data["pressure_hpa"]) == (21.5, 40.2, 1012.3)


def test_a_device_with_a_clock_and_a_humidity_only_device(server: ServerProcess) -> None:
    section = lan_section()
    assert '`"measured_at": "2026-11-25T14:05:00+01:00"`' in section
    now = dt.datetime.now(dt.UTC).astimezone().replace(microsecond=0)
    with_clock = post(server, {"temperature_c": 20.5, "measured_at": (now + dt.timedelta(seconds=1)).isoformat()})
    assert with_clock.status_code == 201, with_clock.text
    humidity_only = re.search(r"sends `(\{\"humidity_pct\": [0-9.]+\})`", section)
    assert humidity_only is not None
    time.sleep(1.1)  # measured after the one above, so it is the one shown
    answer = post(server, json.loads(humidity_only.group(1)))
    assert answer.status_code == 201, answer.text
    assert shown(server)["data"]["humidity_pct"] == 52.0


def test_the_esphome_example_sends_known_fields() -> None:
    (example,) = [b for b in blocks(lan_section(), "yaml") if "http_request.post" in b]

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!secret", lambda loader, node: f"<secret {loader.construct_scalar(node)}>")
    doc = yaml.load(example, Loader=Loader)  # noqa: S506 - SafeLoader plus one tag
    action = doc["interval"][0]["then"][0]["http_request.post"]
    assert action["url"].endswith("/api/sensors/balcony/readings")
    assert action["request_headers"]["Content-Type"] == "application/json"
    assert "Authorization" in action["request_headers"]
    sent = re.findall(r'root\["(\w+)"\]', action["json"])
    assert sent
    assert set(sent) <= set(FIELDS)


def test_each_answer_in_the_table(server: ServerProcess) -> None:
    table = dict(re.findall(r"^\| `(\d{3})` \| ([^|]+)\|", lan_section(), re.M))
    assert sorted(table) == ["201", "400", "401", "404", "413", "503"]
    only_battery = post(server, {"battery_pct": 80})
    assert only_battery.status_code == 400, "the README says a battery level alone is not a reading"
    assert post(server, {"temperature_c": 21.0}).status_code == 201
    bad = post(server, {"temperature_c": 21.0, "humidity_pct": 140})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("humidity_pct: 140 % is outside the plausible range 0..100 %")
    assert post(server, {"temperature_c": 21.0}, token="wrong").status_code == 401
    assert post(server, {"temperature_c": 21.0}, sensor="attic").status_code == 404
    assert post(server, b'{"temperature_c": 21.0, "pad": "' + b"x" * 5000 + b'"}').status_code == 413
    # 503 (the history cannot store) is driven by a failing disk in the history tests.


def test_config_yaml_says_the_same() -> None:
    text = (REPO / "config.yaml").read_text()
    comment = text[: text.index("remote_sensors:\n")].rsplit("\n\n", 1)[1]
    for word in ("curl", "Bearer", *FIELDS, "201", "400", "401", "404", "413", "503", "at least one"):
        assert word in comment, word
    assert Path(REPO / "README.md").read_text().count("## LAN sensors") == 1
