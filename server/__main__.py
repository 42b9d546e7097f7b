"""python -m server: read the config, build everything, serve until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import sys
import threading

from server import __version__
from server.config import Config, ConfigError, load_config, replace
from server.core.checkconfig import check_startable
from server.core.datadir import prepare_data_dir
from server.core.memory import freeze_startup
from server.core.sdnotify import Notifier
from server.core.tls import CertificateError, ReloadingCertificate
from server.doctor import facts
from server.homeboard import Homeboard
from server.web.app import Serving

log = logging.getLogger("server")

SHUTDOWN_BUDGET_S = 4.0  # SIGTERM → exit within 5 s, even under load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m server", description="Homeboard wall-dashboard server")
    p.add_argument("--config", default="config.yaml", help="config file (default: ./config.yaml)")
    p.add_argument("--demo", action="store_true", help="emulated sensors and local API stand-ins; no keys needed")
    p.add_argument("--host", help="address to bind (overrides server.host)")
    p.add_argument("--port", type=int, help="port to bind (overrides server.port; 0 picks a free one)")
    p.add_argument("--data-dir", help="where history and state live (overrides data_dir)")
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config and its ${NAME} secrets, then exit (0: fine, 2: error); starts nothing",
    )
    p.add_argument(
        "--for-another-machine",
        action="store_true",
        help="with --check-config, for a config written for another machine (a Pi, checked on a laptop): the files "
        "it names (secrets_file, TLS certificates and keys) are on that machine, so they are not read here",
    )
    p.add_argument(
        "--doctor",
        action="store_true",
        help="print what provision.sh doctor asks of this machine (name=value lines: the live Wayland sockets, the "
        "GPIO library, the browser profile's crash flag, display.backend), then exit; changes and starts nothing",
    )
    p.add_argument("--runtime-dir", help="with --doctor: the kiosk user's runtime folder (/run/user/UID)")
    p.add_argument("--browser-profile", help="with --doctor: the kiosk's Chromium profile folder")
    p.add_argument("--version", action="version", version=f"homeboard {__version__}")
    args = p.parse_args(argv)
    if args.for_another_machine and not args.check_config:
        p.error("--for-another-machine goes with --check-config")
    if (args.runtime_dir or args.browser_profile) and not args.doctor:
        p.error("--runtime-dir and --browser-profile go with --doctor")
    if args.doctor and not (args.runtime_dir and args.browser_profile):
        p.error("--doctor needs --runtime-dir and --browser-profile")
    return args


def apply_overrides(cfg: Config, args: argparse.Namespace) -> Config:
    server = cfg.server
    if args.host:
        server = replace(server, host=args.host)
    if args.port is not None:
        if not 0 <= args.port < 65536:
            raise ConfigError(f"--port: expected 0-65535, got {args.port}")
        server = replace(server, port=args.port)
    cfg = replace(cfg, server=server)
    if args.data_dir:
        cfg = replace(cfg, data_dir=args.data_dir)
    if args.demo:
        cfg = replace(cfg, demo=True)
    return cfg


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Tornado logs every request at INFO through its own logger; ours (server.web.app.log_request) replaces it.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


async def serve(cfg: Config) -> int:
    notifier = Notifier()
    cert = None
    if cfg.server.tls.certfile and cfg.server.tls.keyfile:
        try:
            cert = ReloadingCertificate(cfg.server.tls.certfile, cfg.server.tls.keyfile)
        except CertificateError as err:
            print(f"homeboard: config error: {err}", file=sys.stderr)
            return 2
    board = Homeboard.build(cfg)
    freeze_startup()  # before the first connection: see server/core/memory.py
    try:
        serving = await Serving.start(board, host=cfg.server.host, port=cfg.server.port, cert=cert)
    except OSError as err:
        log.error("cannot listen on %s:%d: %s", cfg.server.host, cfg.server.port, err.strerror or err)
        return 1

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if cert is not None:
        loop.add_signal_handler(signal.SIGHUP, cert.force_reload)

    notifier.ready()
    notifier.start_watchdog()
    scheme = "https" if cert else "http"
    mode = "demo" if cfg.demo else "live"
    log.info("homeboard %s serving on %s://%s:%d/ (%s)", __version__, scheme, cfg.server.host, serving.port, mode)

    await stop.wait()
    log.info("stopping")
    notifier.stopping()
    notifier.stop_watchdog()
    try:
        await asyncio.wait_for(serving.stop(), SHUTDOWN_BUDGET_S)
    except TimeoutError:
        log.error("shutdown took longer than %.0f s; exiting anyway", SHUTDOWN_BUDGET_S)
    board.executor.shutdown(wait=False, cancel_futures=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    faulthandler.enable()  # a hang killed by the watchdog (SIGABRT) or a crash in C prints the Python stack
    args = parse_args(argv)
    if args.doctor:
        for name, value in facts(args.config, args.runtime_dir, args.browser_profile).items():
            print(f"{name}={value}")
        return 0
    try:
        files_here = not args.for_another_machine
        cfg = apply_overrides(load_config(args.config, demo=args.demo, files_here=files_here), args)
        if args.check_config:
            check_startable(cfg, files_here)  # binds no port, creates no data_dir, calls no API
        else:
            prepare_data_dir(cfg.data_dir)
    except ConfigError as err:
        print(f"homeboard: config error: {err}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"homeboard: config ok: {args.config}")
        return 0
    setup_logging(os.environ.get("HOMEBOARD_LOG_LEVEL", cfg.log_level))
    rc = asyncio.run(serve(cfg))
    stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if stuck:
        # A worker blocked in I/O (a dripping upstream, a hung bus) would make the interpreter wait for it at
        # exit: state is saved and the database closed by now, so leave without joining them.
        log.warning("exiting with %d blocked worker threads: %s", len(stuck), ", ".join(stuck[:5]))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
