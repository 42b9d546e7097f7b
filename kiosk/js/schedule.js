/** Time-of-day rules from the page config: "22:00" parsing and windows that may wrap midnight. */

/** "22:00" → minutes after midnight, or null when missing or malformed. */
export function hhmm(value) {
  const m = typeof value === "string" ? value.match(/^(\d{1,2}):(\d{2})$/) : null;
  if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) return null;
  return Number(m[1]) * 60 + Number(m[2]);
}

/** Is `minute` inside [from, until), a window that may wrap midnight (22:00–06:30)? */
export function inRange(minute, from, until) {
  if (from === null || until === null || from === until) return false;
  return from < until ? minute >= from && minute < until : minute >= from || minute < until;
}
