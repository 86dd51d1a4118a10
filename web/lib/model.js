// The page's one state object and the only ways it changes. Pure: no DOM, no network, no clock of
// its own (every change gets `now`). web/app.js calls these and then renders the whole state.

import { decodeJwt } from './jwt.js';
import { describe, isTokenError } from './errors.js';
import { clockTime } from './time.js';

export const MAX_LOG = 200;
export const MAX_TOKENS = 50;
export const MAX_MESSAGES = 200;

function emptyChannel(name = '') {
  return { name, status: 'none', ops: null, error: '', messages: [], presence: [] };
}

/** Everything the page shows. `who` is null while logged out. */
export function initialState() {
  return {
    setup: 'loading', // 'loading' | 'ready' | 'broken'
    target: 'loading…',
    demoLogin: false,
    providerLogin: null, // { name, url }: "Log in with <name>" (an OpenID Connect provider), or null
    who: null, // { clientId, role, source }
    loginBusy: false,
    logoutBusy: false,
    error: '',
    notice: '',
    connection: { state: 'initialized', reason: null },
    token: null, // { raw, header, claims, issued, expires, capability }
    showRaw: false,
    renewals: 0,
    renewedBy: { 'in-band': 0, reconnect: 0 },
    tokens: [], // the latest MAX_TOKENS: [{ n, issued, expires, receivedAt, replacedAt, kind: 'first' | 'in-band' | 'reconnect' }]
    states: [], // [{ at, state }]: the connection's states over time, for the timeline
    log: [], // [{ at, kind, text }]
    sawDisconnect: false, // the connection dropped since the current token arrived
    channel: emptyChannel(),
  };
}

function bounded(list, limit) {
  if (list.length > limit) list.splice(0, list.length - limit);
}

/** Add a timestamped line to the event log. */
export function note(state, now, kind, text) {
  const last = state.log[state.log.length - 1];
  state.log.push({ id: last ? last.id + 1 : 1, at: now, kind, text });
  bounded(state.log, MAX_LOG);
}

/** Logged in (or found logged in on load): a fresh picture for this identity. */
export function signedIn(state, who, now) {
  Object.assign(state, {
    who: { clientId: who.clientId, role: who.role, source: who.source || 'account' },
    error: '',
    notice: '',
    connection: { state: 'initialized', reason: null },
    token: null,
    showRaw: false,
    renewals: 0,
    renewedBy: { 'in-band': 0, reconnect: 0 },
    tokens: [],
    states: [],
    sawDisconnect: false,
    channel: emptyChannel(state.channel.name),
  });
  note(state, now, 'info', `logged in as ${who.clientId} (${sourceWords(state.who.source)})`);
}

/**
 * Logged out, or the session ended elsewhere: nothing of the old identity stays on screen (clientId,
 * token, capability, renewal count, channel). The timeline and the log stay: they are history.
 */
export function signedOut(state, now, { notice = '', error = '' } = {}) {
  const last = state.tokens[state.tokens.length - 1];
  if (last && last.replacedAt == null) last.replacedAt = now;
  Object.assign(state, {
    who: null,
    token: null,
    showRaw: false,
    renewals: 0,
    renewedBy: { 'in-band': 0, reconnect: 0 },
    sawDisconnect: false,
    notice,
    error,
    channel: emptyChannel(state.channel.name),
  });
}

export function sourceWords(source) {
  if (source === 'demo') return 'demo login';
  if (source === 'account') return 'account';
  return `provider: ${source}`;
}

/**
 * The client's current TokenDetails, looked at on every connection event and once a second. A token
 * not seen before is a renewal: "in-band" when the connection stayed up (Ably's AUTH), "reconnect"
 * when it had dropped (DISCONNECTED 40142 at expiry, then a new connection). Returns true when new.
 */
export function tokenSeen(state, details, now) {
  if (!state.who || !details || typeof details.token !== 'string') return false; // a closing client's token is history
  if (state.token && state.token.raw === details.token) return false;
  const decoded = decodeJwt(details.token);
  const claims = decoded ? decoded.claims : {};
  const issued = details.issued || (claims.iat ? claims.iat * 1000 : now);
  const expires = details.expires || (claims.exp ? claims.exp * 1000 : null);
  const kind = state.token === null ? 'first' : state.sawDisconnect ? 'reconnect' : 'in-band';
  const previous = state.tokens[state.tokens.length - 1];
  if (previous && previous.replacedAt == null) previous.replacedAt = now;
  const n = previous ? previous.n + 1 : 1;
  state.tokens.push({ n, issued, expires, receivedAt: now, replacedAt: null, kind });
  bounded(state.tokens, MAX_TOKENS);
  if (kind !== 'first') {
    state.renewals += 1;
    state.renewedBy[kind] += 1;
  }
  state.sawDisconnect = false;
  state.token = {
    raw: details.token,
    header: decoded ? decoded.header : null,
    claims: decoded ? claims : null,
    issued,
    expires,
    capability: details.capability || claims['x-ably-capability'] || '{}',
  };
  const until = expires ? `, valid until ${clockTime(expires)}` : '';
  const how = { first: 'first token', 'in-band': 'token renewed in band (AUTH)', reconnect: 'token renewed by reconnecting' };
  note(state, now, 'token', `${how[kind]} #${n}${until}`);
  return true;
}

/**
 * The service said who the caller is now (GET /session after a renewal): an operator's `users set-role`
 * reaches the page with the next token. Returns true when the role changed.
 */
export function roleSeen(state, role, now) {
  if (!state.who || typeof role !== 'string' || !role || state.who.role === role) return false;
  const before = state.who.role;
  state.who = { ...state.who, role };
  note(state, now, 'info', `role changed from ${before} to ${role}`);
  return true;
}

/** A connection state change (or an `update` while connected) from ably-js. */
export function connectionChanged(state, change, now) {
  const reason = change.reason || null;
  const previous = state.connection.state;
  state.connection = { state: change.current, reason };
  if (change.current !== previous || !state.states.length) {
    state.states.push({ at: now, state: change.current });
    bounded(state.states, MAX_LOG);
  }
  if (change.current === 'disconnected' || change.current === 'suspended') state.sawDisconnect = true;
  const why = reason && reason.code !== 80017 ? `: ${describe(reason)}` : '';
  if (change.current !== previous) {
    const kind = change.current === 'failed' ? 'error' : isTokenError(reason) ? 'token' : 'state';
    note(state, now, kind, `${change.current}${why}`);
  } else if (why) {
    note(state, now, 'error', `still ${change.current}${why}`);
  }
}

/** Start showing a channel (attaching). */
export function channelChosen(state, name) {
  state.channel = emptyChannel(name);
  state.channel.status = 'attaching';
}

/**
 * Add messages (live or from history) once each, oldest first, keeping the newest MAX_MESSAGES.
 * A message is `{ id, clientId, text, at }`.
 */
export function messagesAdded(state, messages) {
  const list = state.channel.messages;
  const known = new Set(list.map((m) => m.id));
  for (const message of messages) {
    if (message.id && known.has(message.id)) continue;
    known.add(message.id);
    list.push(message);
  }
  list.sort((a, b) => a.at - b.at);
  bounded(list, MAX_MESSAGES);
}

/** An ably-js Message as the page shows it: one layout for live and history messages. */
export function messageView(message, now) {
  const data = message.data;
  return {
    id: message.id || `${message.clientId}:${message.timestamp}:${String(data).slice(0, 40)}`,
    clientId: message.clientId || '',
    text: typeof data === 'string' ? data : JSON.stringify(data),
    at: message.timestamp || now,
  };
}
