"""GPIO: the emulated pin backend (edges from another thread, bouncetime), the Pi backend's one-line failures
(off a Pi; each way the library fails), and PIR/button topics on a real server (edges handed to the event loop)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import tornado.httpclient

from sensors.gpio import GpioError, is_raspberry_pi, open_backend
from sensors.gpio.emulated import EmulatedPins
from sensors.gpio.rpi import RpiPins, explain_import, load_gpio
from server.config import GpioConfig, PinConfig
from server.core.hub import Hub
from server.sensing.gpio_inputs import GpioInputs
from tests.conftest import make_config, require
from tests.serverthread import ServerThread


def wait_for(predicate: Any, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_emulated_edges_arrive_on_another_thread() -> None:
    pins = EmulatedPins()
    pins.setup_input(17, "down")
    seen: list[tuple[int, bool, int]] = []
    pins.add_edge_callback(17, lambda pin, level: seen.append((pin, level, threading.get_ident())))
    assert pins.read(17) is False  # the pull-down decides
    pins.drive_high(17)
    pins.drive_low(17)
    wait_for(lambda: len(seen) == 2)
    assert [(p, lvl) for p, lvl, _ in seen] == [(17, True), (17, False)]
    assert all(ident != threading.get_ident() for _, _, ident in seen)
    pins.cleanup()


def test_emulated_bouncetime_drops_close_edges() -> None:
    now = [0.0]
    pins = EmulatedPins(clock=lambda: now[0])
    pins.setup_input(27, "up")
    seen: list[bool] = []
    pins.add_edge_callback(27, lambda _pin, level: seen.append(level), bounce_ms=50)
    pins.press(27)  # to ground: low
    now[0] = 0.01
    pins.release(27)  # a bounce 10 ms later: dropped, like RPi.GPIO's bouncetime
    now[0] = 0.2
    pins.press(27)
    wait_for(lambda: len(seen) == 2)
    assert seen == [False, False]
    assert pins.dropped_edges == 1
    pins.cleanup()


def test_emulated_pin_errors() -> None:
    pins = EmulatedPins()
    with pytest.raises(GpioError, match="set it up as an input first"):
        pins.add_edge_callback(5, lambda _p, _l: None)
    with pytest.raises(GpioError, match="pull must be one of"):
        pins.setup_input(5, "sideways")
    pins.setup_input(5, "off")
    pins.add_edge_callback(5, lambda _p, _l: None)
    with pytest.raises(GpioError, match="already enabled"):
        pins.add_edge_callback(5, lambda _p, _l: None)
    pins.cleanup()


def test_rpi_backend_off_a_pi_fails_with_one_clear_message() -> None:
    require(not is_raspberry_pi(), "this test needs a machine whose GPIO cannot work (not a Raspberry Pi)")
    with pytest.raises(GpioError, match=r"rpi-lgpio|Raspberry Pi") as info:
        open_backend("rpi")
    assert "\n" not in str(info.value)
    assert open_backend("auto").name == "emulated"
    with pytest.raises(GpioError, match="unknown GPIO backend"):
        open_backend("wiringpi")


def _raising(err: BaseException) -> Any:
    def import_module(name: str) -> Any:
        assert name == "RPi.GPIO"
        raise err

    return import_module


@pytest.mark.parametrize(
    ("err", "cause", "fix"),
    [
        # What each failure really raises (the arm64 test sees the lgpio one from the real library).
        (ModuleNotFoundError("No module named 'RPi'", name="RPi"), "RPi is not installed", "provision.sh again"),
        (ModuleNotFoundError("No module named 'lgpio'", name="lgpio"), "lgpio is not installed", "pip install"),
        (
            FileNotFoundError(2, "No such file or directory", ".lgd-nfy-3"),
            "lgpio cannot create its notification pipe in /opt/homeboard",
            "set LG_WD to a directory this user can write",
        ),
        (RuntimeError("This module can only be run on a Raspberry Pi!"), "not a Raspberry Pi", "backend: emulated"),
        (
            ImportError("/lib/aarch64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found\n(required by _lgpio)"),
            "cannot load (/lib/aarch64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by _lgpio))",
            "provision.sh again",
        ),
        (NotImplementedError("This module does not understand old-style revision codes"), "NotImplementedError", "pip"),
    ],
)
def test_a_gpio_library_that_fails_at_import_gives_one_line_with_cause_and_fix(
    err: BaseException, cause: str, fix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LG_WD", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GpioError) as info:
        load_gpio(_raising(err))
    message = str(info.value)
    assert "\n" not in message
    assert cause.replace("/opt/homeboard", str(tmp_path)) in message
    assert fix in message
    assert info.value.__cause__ is err


def test_the_lgpio_pipe_message_names_lg_wd_when_it_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LG_WD", "/run/homeboard")  # where lgpio was told to go, not the working directory
    message = explain_import(FileNotFoundError(2, "No such file or directory", ".lgd-nfy-3"))
    assert message.startswith("lgpio cannot create its notification pipe in /run/homeboard (")


class _LgpioError(Exception):
    """lgpio.error: its str() is the repr of its value."""

    def __str__(self) -> str:
        return repr(self.args[0])


class _Library:
    """rpi-lgpio's module as far as RpiPins uses it, failing the way the real one does without a GPIO chip."""

    BCM, IN, BOTH, PUD_UP, PUD_DOWN, PUD_OFF = 11, 1, 33, 22, 21, 20

    def __init__(self, setmode: BaseException | None = None, setup: BaseException | None = None) -> None:
        self.errors = {"setmode": setmode, "setup": setup}

    def setmode(self, _mode: int) -> None:
        if self.errors["setmode"]:
            raise self.errors["setmode"]

    def setup(self, _pin: int, _direction: int, pull_up_down: int) -> None:
        if self.errors["setup"]:
            raise self.errors["setup"]


@pytest.mark.parametrize(
    ("library", "expected"),
    [
        # lgpio.error, as rpi-lgpio lets it through from lgpio.gpiochip_open: its text is its message's repr.
        (_Library(setmode=_LgpioError("can not open gpiochip")), "cannot open the Pi's /dev/gpiochip* (can not open"),
        (
            _Library(setmode=RuntimeError("Cannot determine SOC peripheral base address")),
            "classic RPi.GPIO is installed, which cannot drive a Pi 5",
        ),
        (_Library(setup=RuntimeError("GPIO busy")), "BCM pin 4: the pin is in use (GPIO busy): by the kernel (1-Wire"),
        (_Library(setup=OSError(13, "Permission denied")), "BCM pin 4: GPIO access refused"),
    ],
)
def test_a_gpio_library_that_fails_later_gives_one_line_too(library: _Library, expected: str) -> None:
    with pytest.raises(GpioError) as info:
        RpiPins(library).setup_input(4, "up")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_pir_warmup_ignores_early_edges() -> None:
    async def scenario() -> None:
        hub = Hub(ZoneInfo("Europe/Stockholm"), "test")
        pins = EmulatedPins()
        gpio = GpioInputs(hub, GpioConfig(pir=PinConfig(pin=17)), lambda: pins, pir_warmup_s=0.3)
        await gpio.start()
        assert hub.get("gpio/motion").data["motion"] is False  # type: ignore[union-attr]
        pins.drive_high(17)  # a settling PIR module twitches
        await asyncio.sleep(0.1)
        assert hub.get("gpio/motion").data["motion"] is False  # type: ignore[union-attr]
        await asyncio.sleep(0.35)  # warm: the level is read again and published
        assert hub.get("gpio/motion").data["motion"] is True  # type: ignore[union-attr]
        await gpio.stop()

    asyncio.run(scenario())


def gpio_server(tmp_path: Path, backend: str = "emulated") -> ServerThread:
    config = make_config(
        tmp_path,
        gpio={
            "backend": backend,
            "pir": {"pin": 17, "pull": "down", "bounce_ms": 0},
            "buttons": [{"id": "next", "pin": 27, "pull": "up", "bounce_ms": 0}, {"pin": 22, "pull": "down"}],
            "pir_warmup_s": 0,
        },
    )
    return ServerThread(config).start()


def state(srv: ServerThread) -> dict[str, Any]:
    body = tornado.httpclient.HTTPClient().fetch(srv.url + "/api/state").body
    return json.loads(body)["topics"]


def test_motion_and_buttons_published_from_the_loop_thread(tmp_path: Path) -> None:
    srv = gpio_server(tmp_path)
    try:
        services = srv.board
        assert services is not None
        pins = services.gpio.pins
        publish_threads: list[str] = []
        original = services.hub.publish

        def recording_publish(topic: str, data: dict) -> None:
            publish_threads.append(threading.current_thread().name)
            original(topic, data)

        services.hub.publish = recording_publish  # type: ignore[method-assign]
        topics = state(srv)
        assert topics["gpio/motion"]["data"]["motion"] is False
        assert topics["gpio/button/next"]["data"]["pressed"] is False  # pull-up, open contact: high = released
        assert topics["gpio/button/button2"]["data"]["pressed"] is False
        pins.drive_high(17)
        pins.press(27)
        pins.press(22)
        wait_for(lambda: len(publish_threads) == 3)
        topics = state(srv)
        assert topics["gpio/motion"]["data"]["motion"] is True
        assert topics["gpio/button/next"]["data"]["pressed"] is True
        assert topics["gpio/button/button2"]["data"]["pressed"] is True
        assert topics["gpio/motion"]["data"]["changed_at"].endswith(("+01:00", "+02:00"))
        assert set(publish_threads) == {"test-server"}  # handed over to the loop, never published from the GPIO thread
        pins.release(27)
        wait_for(lambda: state(srv)["gpio/button/next"]["data"]["pressed"] is False)
    finally:
        srv.stop()


def test_gpio_that_cannot_work_makes_the_topics_unavailable(tmp_path: Path) -> None:
    require(not is_raspberry_pi(), "this test needs a machine whose GPIO cannot work (not a Raspberry Pi)")
    srv = gpio_server(tmp_path, backend="rpi")
    try:
        topics = state(srv)
        for topic in ("gpio/motion", "gpio/button/next"):
            assert topics[topic]["status"] == "unavailable"
            assert re.search(r"rpi-lgpio|Raspberry Pi", topics[topic]["error"])
            assert topics[topic]["data"] is None
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("gpio", "message"),
    [
        ({"buttons": [{"pin": 5}, {"pin": 6}, {"pin": 13}]}, "gpio.buttons: at most two buttons, got 3"),
        ({"pir": {"pin": 17}, "buttons": [{"pin": 17}]}, "gpio.buttons[0].pin: BCM 17 is already used by gpio.pir"),
        ({"pir": {"pin": 40}}, "gpio.pir.pin: expected a BCM GPIO number 0-27, got 40"),
        ({"pir": {"pin": 17, "pull": "sideways"}}, "gpio.pir.pull: expected one of up, down, off"),
        ({"pir_warmup_s": -1}, "gpio.pir_warmup_s: must be 0 or more, got -1"),
    ],
)
def test_gpio_config_errors_name_the_key(tmp_path: Path, gpio: dict[str, Any], message: str) -> None:
    from server.config import ConfigError

    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, gpio=gpio)
    assert str(info.value).startswith(message)
