/** A widget's frame: a kicker title, its body, and a status line that tells the truth about the data's age. */

import { el, setClass, setText } from "./dom.js";
import { parseTime, since } from "./format.js";
import { t } from "./strings.js";

/**
 * How a topic state should look: {kind, text}.
 * kind: "waiting" (configured, nothing received yet: not a fault), "unavailable" (no data, a reason),
 * "stale" (old data, greyed, its age), "error" (fresh-enough data but the last fetch failed), "ok".
 */
export function describe(state, nowMs = Date.now()) {
  if (!state || state.status === "waiting") return { kind: "waiting", text: t("waiting") };
  const hasData = state.data !== null && typeof state.data === "object";
  const updatedMs = parseTime(state.updated_at);
  const reason = state.error || (state.status === "ok" ? "" : t("unavailable"));
  if (!hasData) {
    if (state.status === "ok") return { kind: "waiting", text: t("waiting") };
    return { kind: "unavailable", text: reason };
  }
  const age = updatedMs === null ? "" : t("updated")(since(updatedMs, nowMs));
  if (state.stale || state.status === "unavailable") {
    return { kind: "stale", text: [age, reason].filter(Boolean).join(" · ") };
  }
  if (state.status !== "ok") return { kind: "error", text: [age, reason].filter(Boolean).join(" · ") };
  return { kind: "ok", text: "" };
}

const KINDS = ["waiting", "unavailable", "stale", "error", "ok"];

/** Apply a description to an element: one is-<kind> class and the status text. */
export function showState(node, statusNode, state) {
  const d = describe(state);
  for (const kind of KINDS) setClass(node, `is-${kind}`, d.kind === kind);
  setText(statusNode, d.text);
  statusNode.hidden = !d.text;
  return d;
}

/** Build the frame inside a widget's element once; returns its parts. */
export function frame(root, title) {
  const titleNode = el("span.kicker-title", title);
  const detail = el("span.kicker-detail");
  const head = el("h2.kicker", titleNode, detail);
  const body = el("div.card-body");
  const status = el("p.card-status");
  status.hidden = true;
  root.append(head, body, status);
  return {
    head,
    body,
    status,
    setDetail: (text) => setText(detail, text),
    setState: (state) => showState(root, status, state),
  };
}
