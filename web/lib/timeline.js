// The connection timeline's geometry: which token bars, state bands and renewal marks to draw where.
// Pure: it computes numbers; web/app.js turns them into SVG. Times are epoch milliseconds.

export const MIN_SPAN_MS = 30_000;
export const MAX_SPAN_MS = 15 * 60_000;
export const MAX_LANES = 6;
const TICK_STEPS_S = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800];

/**
 * How much time the chart shows: about one and a half lifetimes of the current token in whole tens of
 * seconds, at least half a minute, at most a quarter of an hour (an hour-long token then runs off the
 * right edge).
 */
export function spanFor(tokens) {
  const last = tokens[tokens.length - 1];
  const ttl = last ? last.expires - last.issued : 0;
  return Math.min(MAX_SPAN_MS, Math.max(MIN_SPAN_MS, Math.ceil((ttl * 1.6) / 10_000) * 10_000));
}

/** Three quarters of the window lie in the past, one quarter ahead (where the current token ends). */
export function windowAt(now, span) {
  const start = now - Math.round(span * 0.75);
  return { start, end: start + span };
}

/** Tick times: the first step giving at most `maxTicks` ticks, on round multiples of the step. */
export function ticks(start, end, maxTicks = 7) {
  const spanS = (end - start) / 1000;
  const step = (TICK_STEPS_S.find((s) => spanS / s <= maxTicks) || TICK_STEPS_S[TICK_STEPS_S.length - 1]) * 1000;
  const result = [];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) result.push(t);
  return result;
}

/**
 * Lanes for overlapping bars (a renewed token is still valid when its successor arrives): each bar
 * takes the first lane whose previous bar has ended. Input in issue order; returns one lane per bar.
 */
export function assignLanes(tokens) {
  const laneEnds = [];
  return tokens.map((token) => {
    let lane = laneEnds.findIndex((end) => end <= token.issued);
    if (lane === -1) {
      lane = laneEnds.length;
      laneEnds.push(token.expires);
    } else {
      laneEnds[lane] = token.expires;
    }
    return lane;
  });
}

/**
 * The whole picture for `width` pixels at time `now`:
 * - `bars`: one per visible token (the latest MAX_LANES), `x`/`w` for its validity (from its `iat`,
 *   which the service back-dates a few seconds), `usedX`/`usedW` for the part during which it was the
 *   connection's token (from when the client received it until its successor arrived), `lane`, `kind`;
 * - `marks`: renewals when the client received the new token (as the event log beside says), `kind`
 *   "in-band" (AUTH on the open connection) or "reconnect" (a new connection after the token ran out);
 * - `bands`: the connection state over time; `ticks`; `nowX`.
 */
export function layout({ tokens, states, now, width }) {
  const span = spanFor(tokens);
  const { start, end } = windowAt(now, span);
  const x = (t) => ((Math.min(Math.max(t, start), end) - start) / span) * width;
  const visible = tokens.filter((t) => t.expires > start && t.issued < end).slice(-MAX_LANES);
  const lanes = assignLanes(visible);
  const received = (t) => (t.receivedAt == null ? t.issued : t.receivedAt);
  const bars = visible.map((token, i) => {
    const usedUntil = Math.min(token.replacedAt == null ? now : token.replacedAt, token.expires);
    const usedFrom = Math.min(received(token), usedUntil);
    return {
      n: token.n,
      kind: token.kind,
      lane: lanes[i],
      x: x(token.issued),
      w: x(token.expires) - x(token.issued),
      usedX: x(usedFrom),
      usedW: Math.max(0, x(usedUntil) - x(usedFrom)),
      runsOn: token.expires > end,
    };
  });
  const marks = tokens
    .filter((t) => t.kind !== 'first' && received(t) >= start && received(t) <= end)
    .map((t) => ({ n: t.n, kind: t.kind, x: x(received(t)) }));
  const bands = [];
  states.forEach((entry, i) => {
    const until = i + 1 < states.length ? states[i + 1].at : now;
    if (until <= start || entry.at >= end) return;
    bands.push({ state: entry.state, x: x(entry.at), w: Math.max(0, x(until) - x(entry.at)) });
  });
  return {
    start,
    end,
    lanes: lanes.length ? Math.max(...lanes) + 1 : 0,
    bars,
    marks,
    bands,
    ticks: ticks(start, end, Math.max(3, Math.floor(width / 80))).map((t) => ({ at: t, x: x(t) })),
    nowX: x(now),
  };
}

/** One sentence for screen readers and the chart's title: what the chart shows. */
export function summary(tokens) {
  const inBand = tokens.filter((t) => t.kind === 'in-band').length;
  const reconnect = tokens.filter((t) => t.kind === 'reconnect').length;
  if (!tokens.length) return 'No token yet.';
  const s = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return `${s(tokens.length, 'token')}: ${s(inBand, 'renewal')} in band (AUTH), ${s(reconnect, 'renewal')} by reconnecting.`;
}
