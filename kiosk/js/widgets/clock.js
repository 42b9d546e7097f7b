/** The big clock and the date, redrawn once a minute on the minute. */

import { el, setText } from "../dom.js";
import { clockParts, isoWeek, longDate } from "../format.js";
import { everyMinute } from "../ticker.js";
import { t } from "../strings.js";

export function mount(root, store) {
  const main = el("span.clock-main");
  const suffix = el("span.clock-suffix");
  const time = el("time.clock-time", main, suffix);
  const date = el("span.clock-date");
  const week = el("span.clock-week");
  root.append(time, el("div.clock-dateline", date, week));

  const draw = (nowMs) => {
    const parts = clockParts(nowMs);
    setText(main, parts.main);
    setText(suffix, parts.suffix);
    suffix.hidden = !parts.suffix;
    const text = longDate(nowMs);
    setText(date, text.charAt(0).toUpperCase() + text.slice(1));
    setText(week, t("week")(isoWeek(nowMs)));
    time.setAttribute("datetime", new Date(nowMs).toISOString());
    store.lastRenderMs = nowMs;
  };
  draw(Date.now());
  everyMinute(draw);
}
