/** Weather alerts as a banner across the page; expired ones drop off on the page's own clock. */

import { el, setClass, setText } from "../dom.js";
import { parseTime } from "../format.js";
import { everyMinute } from "../ticker.js";

const MAX_ALERTS = 3;
const SEVERE = /extreme|severe|red|orange/i;

export function mount(root, store) {
  const rows = [];
  for (let i = 0; i < MAX_ALERTS; i += 1) {
    const row = { root: el("li.alert"), headline: el("strong.alert-headline"), desc: el("span.alert-desc") };
    row.root.append(row.headline, row.desc);
    rows.push(row);
  }
  const list = el("ul.alert-list", ...rows.map((r) => r.root));
  root.append(list);
  let last = null;

  const draw = (state) => {
    const raw = state?.data?.alerts;
    const now = Date.now();
    const alerts = (Array.isArray(raw) ? raw : []).filter(
      (a) => a && typeof a === "object" && (parseTime(a.expires) ?? Infinity) > now,
    );
    rows.forEach((row, i) => {
      const a = alerts[i];
      row.root.hidden = !a;
      if (!a) return;
      const headline = [a.event, a.headline].find((s) => typeof s === "string" && s.trim()) || "";
      setText(row.headline, headline.trim());
      const desc = typeof a.desc === "string" ? a.desc.trim() : "";
      setText(row.desc, desc && desc !== headline.trim() ? desc : "");
      setClass(row.root, "is-severe", SEVERE.test(String(a.severity || "")));
    });
    root.hidden = alerts.length === 0;
  };

  store.subscribe("weather", (_topic, state) => {
    last = state;
    draw(state);
  });
  draw(last);
  everyMinute(() => draw(last));
}
