/** Weather now (the hero's second half): icon, temperature, condition, feels-like, wind, humidity, sun times. */

import { frame } from "../card.js";
import { el, setText, setWeatherIcon } from "../dom.js";
import { DASH, isNum, percent, temperature, wallTime, wind } from "../format.js";
import { t } from "../strings.js";

function text(v) {
  return typeof v === "string" && v.trim() ? v.trim() : DASH;
}

export function mount(root, store) {
  const card = frame(root, "");
  const icon = el("img.now-icon", { alt: "" });
  const temp = el("span.now-temp");
  const condition = el("p.now-condition");
  const feels = el("span.now-feels");
  const windNode = el("span.now-wind");
  const humidity = el("span.now-humidity");
  const sunrise = el("span.now-sunrise");
  const sunset = el("span.now-sunset");
  card.body.append(
    el("div.now", el("div.now-main", icon, temp), condition),
    el("p.now-details", feels, windNode, humidity, el("span.now-sun", sunrise), el("span.now-sun", sunset)),
  );

  const draw = (state) => {
    card.setState(state);
    const data = state?.data ?? {};
    const now = data.current && typeof data.current === "object" ? data.current : {};
    card.setDetail(typeof data.location === "string" ? data.location.trim() : "");
    setWeatherIcon(icon, now.icon);
    setText(temp, temperature(now.temperature_c));
    setText(condition, text(now.condition));
    setText(feels, `${t("feelsLike")} ${temperature(now.feels_like_c)}`);
    const dir = typeof now.wind_dir === "string" ? ` ${t("compass")(now.wind_dir)}` : "";
    setText(windNode, `${t("wind")} ${wind(now.wind_kph)}${isNum(now.wind_kph) ? dir : ""}`);
    setText(humidity, `${t("humidity")} ${percent(now.humidity_pct)}`);
    const today = Array.isArray(data.days) && data.days[0] && typeof data.days[0] === "object" ? data.days[0] : {};
    setText(sunrise, `${t("sunrise")} ${wallTime(today.sunrise)}`);
    setText(sunset, `${t("sunset")} ${wallTime(today.sunset)}`);
  };

  store.subscribe("weather", (_topic, state) => draw(state));
  if (!store.get("weather")) draw(undefined);
}
