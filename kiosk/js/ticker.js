/** One timer for the whole page, aligned to the next second or minute boundary: no animation loop, ~0 % CPU. */

const perSecond = new Set();
const perMinute = new Set();
let timer = null;
let lastMinute = Math.floor(Date.now() / 60_000);

function run(fns, now) {
  for (const fn of fns) {
    try {
      fn(now);
    } catch (err) {
      console.error("homeboard: a timed update failed", err);
    }
  }
}

function schedule() {
  clearTimeout(timer);
  timer = null;
  if (!perSecond.size && !perMinute.size) return;
  const step = perSecond.size ? 1_000 : 60_000;
  const now = Date.now();
  // A few ms past the boundary, so the new second has surely begun when we read the clock.
  timer = setTimeout(tick, step - (now % step) + 5);
}

function tick() {
  const now = Date.now();
  run(perSecond, now);
  const minute = Math.floor(now / 60_000);
  if (minute !== lastMinute) {
    lastMinute = minute;
    run(perMinute, now);
  }
  schedule();
}

/** fn(nowMs) at every second boundary while subscribed; returns the unsubscribe function. */
export function everySecond(fn) {
  perSecond.add(fn);
  schedule();
  return () => {
    perSecond.delete(fn);
    schedule();
  };
}

/** fn(nowMs) at every minute boundary; returns the unsubscribe function. */
export function everyMinute(fn) {
  perMinute.add(fn);
  schedule();
  return () => {
    perMinute.delete(fn);
    schedule();
  };
}
