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
import time

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from server import __version__
from server.app import Upkeep, build_services, install_features, make_app
from server.config import (
    Config,
    ConfigError,
    DeparturesConfig,
    StravaConfig,
    WeatherConfig,
    load_config,
    replace,
)
from server.datadir import prepare_data_dir
from server.laststate import LastStateStore
from server.sdnotify import Notifier
from server.services import Services
from server.tls import CertificateError, ReloadingCertificate

log = logging.getLogger("server")

DEMO_SECRET = "demo"  # noqa: S105 - the demo stand-in accepts any credentials
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
    p.add_argument("--version", action="version", version=f"homeboard {__version__}")
    return p.parse_args(argv)


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
    if cfg.demo:
        cfg = with_demo_sources(cfg)
    return cfg


def with_demo_sources(cfg: Config) -> Config:
    """Demo mode runs every remote source (against the local stand-in), even those the file leaves out."""
    s = cfg.sources
    strava = s.strava or StravaConfig(client_id="demo", client_secret=DEMO_SECRET)
    if strava.refresh_token is None:  # the real one comes from setup; the stand-in takes any
        strava = replace(strava, refresh_token=DEMO_SECRET)
    return replace(
        cfg,
        sources=replace(
            s,
            weather=s.weather or WeatherConfig(api_key="demo-key"),
            departures=s.departures or DeparturesConfig(site_id=9192),
            strava=strava,
        ),
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Tornado logs every request at INFO through its own logger; ours (server.app.log_request) replaces it.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


async def start_demo_standin(services: Services) -> HTTPServer:
    """The built-in stand-in for WeatherAPI, SL and Strava, on a loopback port of its own."""
    from server.demo import standin

    server = HTTPServer(standin.make_standin_app())
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    services.demo_urls = standin.demo_urls(f"http://127.0.0.1:{port}")
    log.info("demo mode: API stand-in on http://127.0.0.1:%d", port)
    return server


async def serve(cfg: Config) -> int:
    started = time.monotonic()
    services = build_services(cfg)
    services.extras["started_monotonic"] = started
    notifier = Notifier()
    standin_server = await start_demo_standin(services) if cfg.demo else None
    routes = install_features(services)
    app = make_app(services, routes)

    cert = None
    if cfg.server.tls.certfile and cfg.server.tls.keyfile:
        try:
            cert = ReloadingCertificate(cfg.server.tls.certfile, cfg.server.tls.keyfile)
        except CertificateError as err:
            print(f"homeboard: config error: {err}", file=sys.stderr)
            return 2

    laststate = LastStateStore(services.data_dir)
    restored = laststate.load_into(services.hub)
    if restored:
        log.info("restored %d topics from last-known state (stale until refreshed)", restored)

    http = HTTPServer(
        app,
        ssl_options=cert.context if cert else None,
        max_body_size=cfg.server.max_body_bytes,
        max_header_size=cfg.server.max_header_bytes,
        idle_connection_timeout=cfg.server.idle_connection_timeout_s,
        body_timeout=10,
    )
    try:
        sockets = bind_sockets(cfg.server.port, cfg.server.host)
    except OSError as err:
        log.error("cannot listen on %s:%d: %s", cfg.server.host, cfg.server.port, err.strerror or err)
        return 1
    http.add_sockets(sockets)
    port = sockets[0].getsockname()[1]

    for hook in services.on_start:
        await hook()
    services.runner.start()
    upkeep = Upkeep(services, laststate, cert)
    upkeep.start()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if cert is not None:
        loop.add_signal_handler(signal.SIGHUP, cert.force_reload)

    notifier.ready()
    notifier.start_watchdog()
    scheme = "https" if cert else "http"
    log.info(
        "homeboard %s serving on %s://%s:%d/ (%s)",
        __version__,
        scheme,
        cfg.server.host,
        port,
        "demo" if cfg.demo else "live",
    )

    await stop.wait()
    log.info("stopping")
    notifier.stopping()
    notifier.stop_watchdog()
    try:
        await asyncio.wait_for(shutdown(services, http, standin_server, upkeep, laststate), SHUTDOWN_BUDGET_S)
    except TimeoutError:
        log.error("shutdown took longer than %.0f s; exiting anyway", SHUTDOWN_BUDGET_S)
    services.executor.shutdown(wait=False, cancel_futures=True)
    return 0


async def shutdown(
    services: Services,
    http: HTTPServer,
    standin_server: HTTPServer | None,
    upkeep: Upkeep,
    laststate: LastStateStore,
) -> None:
    http.stop()
    upkeep.stop()
    for client in list(services.hub.clients.values()):
        close = getattr(client, "close", None)
        if close is not None:
            close(1001, "server shutting down")
    await services.runner.stop()
    for hook in services.on_stop:
        try:
            await hook()
        except Exception:  # keep stopping the rest: a failed flush is logged, not a hang
            log.exception("shutdown hook failed")
    blob = laststate.snapshot_blob(services.hub)
    await asyncio.get_running_loop().run_in_executor(services.executor, laststate.save_blob, blob)
    if standin_server is not None:
        standin_server.stop()


def main(argv: list[str] | None = None) -> int:
    faulthandler.enable()  # a hang killed by the watchdog (SIGABRT) or a crash in C prints the Python stack
    args = parse_args(argv)
    try:
        cfg = apply_overrides(load_config(args.config, demo=args.demo), args)
    except ConfigError as err:
        print(f"homeboard: config error: {err}", file=sys.stderr)
        return 2
    if args.check_config:  # binds no port, creates no data_dir, calls no API
        print(f"homeboard: config ok: {args.config}")
        return 0
    try:
        prepare_data_dir(cfg.data_dir)
    except ConfigError as err:
        print(f"homeboard: config error: {err}", file=sys.stderr)
        return 2
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
