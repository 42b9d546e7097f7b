"""/metrics in the Prometheus text format, written by hand (no dependency for a dozen gauges)."""

from __future__ import annotations

import resource
import time

from server.core.hub import Hub
from server.core.runner import SourceRunner


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize()
    except OSError:  # not Linux
        return 0


def render_metrics(hub: Hub, runner: SourceRunner) -> str:
    now = time.time()
    lines = [
        "# HELP homeboard_ws_clients Connected WebSocket clients.",
        "# TYPE homeboard_ws_clients gauge",
        f"homeboard_ws_clients {len(hub.clients)}",
        "# HELP homeboard_updates_total Updates fanned out to clients.",
        "# TYPE homeboard_updates_total counter",
        f"homeboard_updates_total {hub.updates_sent}",
        "# HELP homeboard_frames_written_total WebSocket frames written (updates × clients).",
        "# TYPE homeboard_frames_written_total counter",
        f"homeboard_frames_written_total {hub.frames_written}",
        "# HELP homeboard_clients_evicted_total Clients dropped for falling behind.",
        "# TYPE homeboard_clients_evicted_total counter",
        f"homeboard_clients_evicted_total {hub.clients_evicted}",
        "# HELP homeboard_process_resident_memory_bytes Resident set size.",
        "# TYPE homeboard_process_resident_memory_bytes gauge",
        f"homeboard_process_resident_memory_bytes {_rss_bytes()}",
        "# HELP homeboard_topic_stale 1 when a topic is stale.",
        "# TYPE homeboard_topic_stale gauge",
    ]
    for topic, state in sorted(hub.topics.items()):
        lines.append(f'homeboard_topic_stale{{topic="{_escape(topic)}"}} {int(state.stale)}')
    lines += [
        "# HELP homeboard_topic_age_seconds Seconds since the topic's last good value.",
        "# TYPE homeboard_topic_age_seconds gauge",
    ]
    for topic, state in sorted(hub.topics.items()):
        if state.updated_at is not None:
            lines.append(f'homeboard_topic_age_seconds{{topic="{_escape(topic)}"}} {now - state.updated_at:.1f}')
    lines += [
        "# HELP homeboard_source_failures_total Failed fetches per source.",
        "# TYPE homeboard_source_failures_total counter",
    ]
    for name, h in sorted(runner.health.items()):
        lines.append(f'homeboard_source_failures_total{{source="{_escape(name)}"}} {h.failures}')
    lines += ["# HELP homeboard_source_runs_total Fetches per source.", "# TYPE homeboard_source_runs_total counter"]
    for name, h in sorted(runner.health.items()):
        lines.append(f'homeboard_source_runs_total{{source="{_escape(name)}"}} {h.runs}')
    return "\n".join(lines) + "\n"
