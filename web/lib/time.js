// Time as people read it. Pure: every function takes the time it needs as a parameter.

const pad = (n) => String(n).padStart(2, '0');

/** "14:03:07" in local time, for a log line or a message (one format everywhere on the page). */
export function clockTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A duration in words: "0 s", "45 s", "2 min 05 s", "1 h 00 min". Negative durations count as 0. */
export function duration(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  if (total < 60) return `${total} s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes} min ${pad(total % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${pad(minutes % 60)} min`;
}

/**
 * What the "time left" field says: the countdown while the connection can still renew, and a plain
 * statement once it cannot (after FAILED or CLOSED the countdown stops: nothing will renew).
 */
export function timeLeft(expires, now, connectionState) {
  if (expires == null) return '–';
  if (connectionState === 'failed' || connectionState === 'closed') return 'stopped (not connected)';
  if (expires <= now) return 'expired';
  return duration(expires - now);
}
