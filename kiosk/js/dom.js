/** Tiny DOM helpers: elements built with textContent only (never innerHTML), SVG via createElementNS. */

const SVG_NS = "http://www.w3.org/2000/svg";

/** el("div.card.big", "text") or el("span", {title: "x"}, child, ...). Strings become text nodes. */
export function el(spec, ...rest) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  append(node, rest);
  return node;
}

export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function append(node, items) {
  for (const item of items) {
    if (item === null || item === undefined || item === false) continue;
    if (typeof item === "string" || typeof item === "number") node.append(String(item));
    else if (item instanceof Node) node.append(item);
    else if (typeof item === "object") for (const [k, v] of Object.entries(item)) node.setAttribute(k, String(v));
  }
}

/** Set text only when it changed: a per-second tick then costs no layout when nothing moved. */
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

export function setClass(node, name, on) {
  if (node.classList.contains(name) !== Boolean(on)) node.classList.toggle(name, Boolean(on));
}

/** Show or hide for a data reason (a row with nothing to show); fitChildren then leaves it alone. */
export function show(node, visible) {
  node.hidden = !visible;
  delete node.dataset.fitHidden;
}

/**
 * Hide trailing children that would overflow their box, so a list ends on a whole row instead of a cut one.
 * Only rows that are shown, or that an earlier fit hid, take part. Returns how many it hid.
 */
export function fitChildren(container) {
  const items = [...container.children].filter((c) => !c.hidden || c.dataset.fitHidden);
  for (const item of items) {
    item.hidden = false;
    delete item.dataset.fitHidden;
  }
  const limit = container.getBoundingClientRect().bottom + 1;
  let hidden = 0;
  for (const item of items) {
    if (hidden || item.getBoundingClientRect().bottom > limit) {
      hidden += 1;
      item.hidden = true;
      item.dataset.fitHidden = "1";
    }
  }
  return hidden;
}

const ICON_NAMES = new Set([
  "clear-day",
  "clear-night",
  "partly-cloudy-day",
  "partly-cloudy-night",
  "cloudy",
  "fog",
  "drizzle",
  "rain",
  "heavy-rain",
  "sleet",
  "snow",
  "thunder",
]);

/** Point an <img> at a local weather icon; an unknown name hides it rather than guessing a condition. */
export function setWeatherIcon(img, name) {
  const ok = typeof name === "string" && ICON_NAMES.has(name);
  const src = ok ? `/icons/${name}.svg` : "";
  if (img.getAttribute("src") !== src) {
    if (ok) img.setAttribute("src", src);
    else img.removeAttribute("src");
  }
  img.hidden = !ok;
}
