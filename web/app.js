// The authserver login page: log in, connect to Ably with authUrl '/auth', and watch the token renew.
// An ES module, no build step, no inline script or style (the Content Security Policy forbids both).
//
// One state object (web/lib/model.js) and one render path: every event changes `state` through the
// model's functions, then calls `update()`, which renders the whole page from `state` once per task.
// Tokens are shown decoded, the raw JWT only when asked for; the page never writes to the console at all.

import { allows, channelOperations, capabilityRows } from './lib/capability.js';
import { describe, isSessionEnded, loginFailure, sessionEndedText } from './lib/errors.js';
import { claimRows } from './lib/jwt.js';
import {
  channelChosen,
  connectionChanged,
  initialState,
  messagesAdded,
  messageView,
  note,
  roleSeen,
  signedIn,
  signedOut,
  sourceWords,
  tokenSeen,
} from './lib/model.js';
import { clockTime, timeLeft } from './lib/time.js';
import { layout, summary } from './lib/timeline.js';

const $ = (id) => document.getElementById(id);
const el = {
  target: $('ably-target'),
  error: $('error'),
  notice: $('notice'),
  loginSection: $('login-section'),
  demoHint: $('demo-hint'),
  providerBox: $('provider-login-box'),
  providerLink: $('provider-login'),
  loginForm: $('login-form'),
  username: $('username'),
  password: $('password'),
  loginButton: $('login-button'),
  state: $('connection-state'),
  stateReason: $('state-reason'),
  clientId: $('client-id'),
  identitySource: $('identity-source'),
  expiry: $('token-expiry'),
  expiryAt: $('token-expiry-at'),
  renewals: $('renewal-count'),
  renewalKinds: $('renewal-kinds'),
  logoutButton: $('logout-button'),
  timelineSection: $('timeline-section'),
  timelineSummary: $('timeline-summary'),
  timelineBox: $('timeline-box'),
  timeline: $('timeline'),
  eventLog: $('event-log'),
  tokenSection: $('token-section'),
  capability: $('capability').tBodies[0],
  claims: $('claims').tBodies[0],
  jwtHeader: $('jwt-header').tBodies[0],
  rawToggle: $('raw-toggle'),
  rawToken: $('raw-token'),
  channelSection: $('channel-section'),
  attachForm: $('attach-form'),
  channelName: $('channel-name'),
  channelState: $('channel-state'),
  channelOps: $('channel-ops'),
  channelError: $('channel-error'),
  publishForm: $('publish-form'),
  messageText: $('message-text'),
  publishButton: $('publish-button'),
  publishHint: $('publish-hint'),
  messages: $('message-list'),
  presence: $('presence-list'),
};

const JSON_HEADERS = { 'Content-Type': 'application/json', Accept: 'application/json' };
const CHANNEL_KEY = 'authserver.channel:'; // + the clientId: each user's own last channel
const DEFAULT_CHANNEL = el.channelName.defaultValue;
const HISTORY_LIMIT = 50;
const SVG = 'http://www.w3.org/2000/svg';

const state = initialState();
let config = null; // GET /client-config
let realtime = null; // the one Ably.Realtime, or null
let generation = 0; // callbacks of a replaced client compare this and fall silent
let ticker = null;
let channel = null; // the attached ably-js channel, or null
let attachWhenConnected = null; // the remembered channel, after a reload found the session alive

// What the page went through, for people debugging and for the end-to-end tests (read-only outside).
const record = { states: [], events: [], clientsCreated: 0, libraryLog: [] };
window.__authserverPage = {
  get states() { return record.states.slice(); },
  get events() { return record.events.slice(); },
  get clientsCreated() { return record.clientsCreated; },
  get libraryLog() { return record.libraryLog.slice(); },
  get renewals() { return state.renewals; },
  get tokens() { return state.tokens.map(({ n, kind, issued, expires, receivedAt }) => ({ n, kind, issued, expires, receivedAt })); },
};

// ---------- the one render path ----------

let renderQueued = false;

/** Render the whole page from `state`, once, after the current task. */
function update() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  const now = Date.now();
  const who = state.who;
  const conn = state.connection;
  el.target.textContent = state.target;
  el.loginButton.disabled = state.setup !== 'ready' || state.loginBusy;
  el.demoHint.hidden = !(state.demoLogin && !who);
  el.providerBox.hidden = !(state.providerLogin && !who);
  if (state.providerLogin) {
    el.providerLink.textContent = `Log in with ${state.providerLogin.name}`;
    el.providerLink.href = state.providerLogin.url;
  }
  showText(el.error, state.error);
  showText(el.notice, state.notice);
  el.loginSection.hidden = Boolean(who);
  el.logoutButton.hidden = !who;
  el.logoutButton.disabled = state.logoutBusy;

  const shownState = who || conn.state !== 'initialized' ? conn.state : 'not connected';
  if (el.state.textContent !== shownState) el.state.textContent = shownState;
  el.state.dataset.state = conn.state;
  // The reason once: not when the banner above already says it, nor for an ordinary close (80017).
  const reason = conn.reason && conn.state !== 'connected' && conn.reason.code !== 80017 && !state.error;
  showText(el.stateReason, reason ? `Reason: ${describe(conn.reason)}` : '');

  el.clientId.textContent = who ? who.clientId : '–';
  el.identitySource.textContent = who ? `(${sourceWords(who.source)}, role ${who.role})` : '';
  const token = state.token;
  el.expiry.textContent = timeLeft(token && token.expires, now, conn.state);
  el.expiryAt.textContent = token && token.expires ? `(until ${clockTime(token.expires)})` : '';
  el.renewals.textContent = String(state.renewals);
  const by = state.renewedBy;
  el.renewalKinds.textContent = state.renewals ? `(${by['in-band']} in band, ${by.reconnect} by reconnecting)` : '';

  el.timelineSection.hidden = state.log.length === 0;
  if (!el.timelineSection.hidden) renderTimeline(now);
  syncList(el.eventLog, state.log, (entry) => entry.id, buildLogLine, true);

  el.tokenSection.hidden = !token;
  if (token) renderToken(token);

  el.channelSection.hidden = !who;
  const ch = state.channel;
  el.channelState.textContent = ch.status === 'none' ? 'none' : `${ch.name} (${ch.status})`;
  el.channelOps.textContent = ch.status === 'none' ? '–' : channelOperations(ch.ops);
  showText(el.channelError, ch.error);
  // Publish only where the service says this caller may (Ably would refuse it with 40160 anyway).
  const mayPublish = allows(ch.ops, 'publish');
  el.publishButton.disabled = !(channel && ch.status === 'attached' && conn.state === 'connected' && mayPublish);
  el.messageText.disabled = Boolean(ch.ops) && !mayPublish;
  showText(el.publishHint, ch.ops && !mayPublish ? `You may not publish on ${ch.name} (allowed: ${channelOperations(ch.ops)}).` : '');
  syncList(el.messages, ch.messages, (m) => m.id, buildMessage, true);
  syncList(el.presence, ch.presence, (id) => id, buildPresent, false);
}

function showText(node, text) {
  if (node.textContent !== text) node.textContent = text;
  node.hidden = !text;
}

/**
 * Make `list`'s children show `items` in order, reusing the element already made for a key (no
 * flicker, and a live region announces only what is new). Scrolls to the end when items were added.
 */
function syncList(list, items, keyOf, build, follow) {
  const known = new Map([...list.children].map((child) => [child.dataset.key, child]));
  let added = false;
  items.forEach((item, i) => {
    const key = String(keyOf(item));
    let node = known.get(key);
    if (node) {
      known.delete(key);
    } else {
      node = build(item);
      node.dataset.key = key;
      added = true;
    }
    if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
  });
  known.forEach((node) => node.remove());
  if (added && follow) list.scrollTop = list.scrollHeight;
}

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function timeNode(at) {
  const time = make('time', 'at', clockTime(at));
  time.dateTime = new Date(at).toISOString();
  return time;
}

function buildLogLine(entry) {
  const item = make('li', `log-${entry.kind}`);
  item.append(timeNode(entry.at), make('span', 'text', entry.text));
  return item;
}

// One layout for every message, live or from history: time, who, text.
function buildMessage(message) {
  const item = make('li');
  item.dataset.clientId = message.clientId;
  item.append(timeNode(message.at), make('span', 'who', message.clientId || '(anonymous)'), make('span', 'text', message.text));
  return item;
}

function buildPresent(clientId) {
  const item = make('li', null, clientId);
  item.dataset.clientId = clientId;
  return item;
}

function fillRows(body, rows) {
  body.replaceChildren(
    ...rows.map(([name, value]) => {
      const row = make('tr');
      const head = make('th', null, name);
      head.scope = 'row';
      row.append(head, make('td', null, value));
      return row;
    }),
  );
}

let renderedToken = null;

function renderToken(token) {
  if (renderedToken !== token.raw) {
    renderedToken = token.raw;
    fillRows(el.capability, capabilityRows(token.capability).map((row) => [row.resource, row.operations]));
    fillRows(el.claims, token.claims ? claimRows(token.claims, clockTime) : [['(not a JWT)', '']]);
    fillRows(el.jwtHeader, token.header ? Object.keys(token.header).sort().map((k) => [k, String(token.header[k])]) : []);
  }
  el.rawToggle.setAttribute('aria-expanded', String(state.showRaw));
  el.rawToggle.textContent = state.showRaw ? 'Hide the raw token' : 'Show the raw token';
  const raw = state.showRaw ? token.raw : '';
  if (el.rawToken.textContent !== raw) el.rawToken.textContent = raw;
  el.rawToken.hidden = !state.showRaw;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

const BAND_H = 10;
const LANE_H = 18;
const AXIS_H = 20;

function renderTimeline(now) {
  const width = Math.max(200, Math.floor(el.timelineBox.clientWidth || 600));
  const picture = layout({ tokens: state.tokens, states: state.states, now, width });
  const lanesTop = BAND_H + 6;
  const height = lanesTop + Math.max(1, picture.lanes) * LANE_H + AXIS_H;
  const axisY = height - AXIS_H + 2;
  el.timeline.setAttribute('viewBox', `0 0 ${width} ${height}`);
  el.timeline.setAttribute('height', String(height));
  el.timelineSummary.textContent = summary(state.tokens);
  const parts = [svg('rect', { class: 'chart-bg', x: 0, y: 0, width, height })];
  for (const band of picture.bands) {
    parts.push(svg('rect', { class: `band band-${band.state}`, x: band.x, y: 0, width: band.w, height: BAND_H }));
  }
  for (const bar of picture.bars) {
    const y = lanesTop + bar.lane * LANE_H;
    parts.push(svg('rect', { class: 'bar-life', x: bar.x, y, width: Math.max(1, bar.w), height: LANE_H - 4, rx: 3 }));
    parts.push(svg('rect', { class: `bar-used bar-${bar.kind}`, x: bar.usedX, y, width: bar.usedW, height: LANE_H - 4, rx: 3 }));
    // The number on the solid part when it fits there, else just after it in the dark ink.
    const onSolid = bar.usedW > 26;
    const labelX = onSolid ? bar.usedX + 4 : bar.usedX + bar.usedW + 3;
    if (onSolid || bar.x + bar.w - (bar.usedX + bar.usedW) > 26) {
      parts.push(svg('text', { class: onSolid ? 'bar-label' : 'bar-label bar-label-dark', x: labelX, y: y + LANE_H - 7 }, `#${bar.n}`));
    }
  }
  for (const mark of picture.marks) {
    parts.push(svg('line', { class: `mark mark-${mark.kind}`, x1: mark.x, x2: mark.x, y1: 0, y2: axisY }));
    parts.push(svg('circle', { class: `mark-dot mark-${mark.kind}`, cx: mark.x, cy: BAND_H / 2, r: 4 }));
  }
  parts.push(svg('line', { class: 'axis', x1: 0, x2: width, y1: axisY, y2: axisY }));
  for (const tick of picture.ticks) {
    parts.push(svg('line', { class: 'tick', x1: tick.x, x2: tick.x, y1: axisY, y2: axisY + 4 }));
    if (tick.x > 24 && tick.x < width - 24) {
      parts.push(svg('text', { class: 'tick-label', x: tick.x, y: axisY + 15, 'text-anchor': 'middle' }, clockTime(tick.at)));
    }
  }
  parts.push(svg('line', { class: 'now', x1: picture.nowX, x2: picture.nowX, y1: 0, y2: axisY }));
  el.timeline.replaceChildren(...parts);
}

// ---------- talking to the service ----------

async function fetchJson(url, options) {
  const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store', ...options });
  let body = null;
  if ((response.headers.get('content-type') || '').includes('application/json')) {
    body = await response.json().catch(() => null);
  }
  return { response, body };
}

function loadAblyJs(source) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = source.src;
    if (source.integrity) {
      script.integrity = source.integrity;
      script.crossOrigin = 'anonymous';
    }
    script.addEventListener('load', () => (window.Ably ? resolve() : reject(new Error('no Ably global'))));
    script.addEventListener('error', () => reject(new Error(`could not load ${source.src}`)));
    document.head.appendChild(script);
  });
}

// The last channel each user attached (per clientId: another user of this browser has their own),
// written only once the attach succeeded.
function rememberedChannel(clientId) {
  try {
    return window.localStorage.getItem(CHANNEL_KEY + clientId);
  } catch (err) {
    return null; // storage blocked: nothing remembered, nothing lost
  }
}

function rememberChannel(clientId, name) {
  try {
    window.localStorage.setItem(CHANNEL_KEY + clientId, name);
  } catch (err) {
    // storage blocked or full: the page works without it
  }
}

function forgetRememberedChannel(clientId, name) {
  try {
    if (window.localStorage.getItem(CHANNEL_KEY + clientId) === name) window.localStorage.removeItem(CHANNEL_KEY + clientId);
  } catch (err) {
    // storage blocked: nothing was remembered
  }
}

async function start() {
  el.loginForm.addEventListener('submit', onLogin);
  el.logoutButton.addEventListener('click', onLogout);
  el.attachForm.addEventListener('submit', onAttach);
  el.publishForm.addEventListener('submit', onPublish);
  el.rawToggle.addEventListener('click', () => {
    state.showRaw = !state.showRaw;
    update();
  });
  window.addEventListener('resize', update);
  update();
  try {
    const { response, body } = await fetchJson('/client-config');
    if (!response.ok || !body) throw new Error(`HTTP ${response.status}`);
    config = body;
  } catch (err) {
    fail('Cannot reach the server to load the page settings. Check your connection and reload the page.');
    return;
  }
  state.target = config.target || 'Ably';
  state.demoLogin = Boolean(config.demoLogin); // newer services say it here; /session says it too
  state.providerLogin = config.providerLogin || null;
  // Back from the provider's login pages without a session: the service says why in the query.
  const loginError = new URLSearchParams(window.location.search).get('login_error');
  if (loginError) {
    state.error = `Log in with ${state.providerLogin ? state.providerLogin.name : 'the provider'} failed: ${loginError}`;
    window.history.replaceState(null, '', '/');
  }
  try {
    await loadAblyJs(config.ablyJs);
  } catch (err) {
    fail(`The Ably client library could not be loaded (${err.message}). Reload the page to try again.`);
    return;
  }
  state.setup = 'ready';
  update();
  // Still logged in from before a reload? Then connect, and go back to the channel of last time.
  let session;
  try {
    session = (await fetchJson('/session')).body;
  } catch (err) {
    fail('Cannot reach the server. Check your connection and try again.');
    return;
  }
  if (!session) return;
  state.demoLogin = state.demoLogin || Boolean(session.demoLogin);
  if (session.loggedIn) {
    beginSession(session);
    attachWhenConnected = rememberedChannel(session.clientId); // after beginSession: starting a client forgets any pending attach
  } else if (session.ended) {
    state.notice = sessionEndedText({ code: 80019, cause: session.ended });
  }
  update();
}

function fail(text) {
  state.error = text;
  state.setup = state.setup === 'ready' ? 'ready' : 'broken';
  update();
}

// ---------- log in / log out ----------

async function onLogin(event) {
  event.preventDefault();
  if (state.loginBusy || state.setup !== 'ready') return; // a double submit must not create a second client
  const username = el.username.value.trim();
  const password = el.password.value;
  state.error = '';
  state.notice = '';
  if (!username || !password) {
    state.error = 'Enter your username and password.';
    update();
    (username ? el.password : el.username).focus();
    return;
  }
  state.loginBusy = true;
  update();
  try {
    let result;
    try {
      result = await fetchJson('/login', { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username, password }) });
    } catch (err) {
      state.error = 'Cannot reach the server. Check your connection and try again.';
      return;
    }
    const { response, body } = result;
    if (!response.ok || !body) {
      state.error = loginFailure(response.status, body);
      if (response.status === 401) {
        el.password.value = '';
        el.password.focus();
      }
      return;
    }
    el.password.value = '';
    // The login answer names the clientId; /session adds where the identity came from.
    let who = body;
    try {
      const session = (await fetchJson('/session')).body;
      if (session && session.loggedIn) who = session;
    } catch (err) {
      // the login worked; the identity source stays unknown
    }
    beginSession(who);
  } finally {
    state.loginBusy = false;
    update();
  }
}

async function onLogout() {
  state.logoutBusy = true;
  // Close first, so no token renewal races the end of the session.
  closeClient();
  signedOut(state, Date.now());
  note(state, Date.now(), 'info', 'logged out');
  update();
  try {
    const { response, body } = await fetchJson('/logout', { method: 'POST', headers: JSON_HEADERS, body: '{}' });
    if (response.ok) {
      state.notice = 'You are logged out.';
    } else {
      state.error = `Logging out failed: ${loginFailure(response.status, body)}`;
    }
  } catch (err) {
    state.error = 'Cannot reach the server to end the session. The connection to Ably is closed.';
  } finally {
    state.logoutBusy = false;
    update();
    el.username.focus();
  }
}

function endSession(reason) {
  closeClient();
  // Already signed out here (this window's own logout): a renewal that was in flight and comes back
  // refused must not replace "You are logged out." with a reason meant for another window.
  if (!state.who) {
    update();
    return;
  }
  const now = Date.now();
  const text = sessionEndedText(reason);
  signedOut(state, now, { notice: text });
  const cause = reason && reason.cause;
  note(state, now, 'error', `session ended: ${text}${cause && cause.code && !text.includes(`(${cause.code})`) ? ` (${cause.code})` : ''}`);
  update();
}

// ---------- the Ably client ----------

let checkingSession = false;

// ably-js reported an error (typically: Ably's AUTH prompt came and /auth refused to renew). A renewal
// refused with 401 leaves the connection up until the old token expires, up to a token lifetime later
// (spec 5.2), so ask the service now: if the session is gone, say so at once. 403s (a session ended
// elsewhere, a disabled account) need no help: ably-js fails the connection straight away, and the
// page shows why from the refusal itself.
async function checkSession(gen) {
  if (checkingSession || !state.who) return;
  checkingSession = true;
  try {
    const { body } = await fetchJson('/session');
    if (gen === generation && state.who && body && !body.loggedIn) {
      const ended = body.ended || { code: 40101, statusCode: 401, message: 'not logged in' };
      const reason = { code: 80019, statusCode: ended.code === 40101 ? 401 : 403, cause: ended };
      if (isSessionEnded(reason)) endSession(reason);
    }
  } catch (err) {
    // unreachable service: the connection's own state will tell
  } finally {
    checkingSession = false;
  }
}

function beginSession(who) {
  signedIn(state, who, Date.now());
  el.channelName.value = rememberedChannel(who.clientId) || DEFAULT_CHANNEL;
  startClient();
}

// A new token arrived: after a renewal, ask the service who the caller is now (an operator may have
// changed the role) and what the attached channel allows now, so the page shows what the token says.
function tokenArrived(client, now) {
  if (!tokenSeen(state, client.auth.tokenDetails, now)) return;
  if (state.tokens[state.tokens.length - 1].kind !== 'first') refreshAllowance(generation);
}

async function refreshAllowance(gen) {
  const name = channel ? state.channel.name : null;
  try {
    const { body } = await fetchJson(name ? `/session?channel=${encodeURIComponent(name)}` : '/session');
    if (gen !== generation || !state.who || !body || !body.loggedIn) return;
    roleSeen(state, body.role, Date.now());
    if (name && channel && state.channel.name === name && body.channel) state.channel.ops = body.channel;
    update();
  } catch (err) {
    // unreachable service: the next renewal asks again
  }
}

function startClient() {
  discardClient(); // one client at a time: the old one is closed before a new one exists
  const gen = ++generation;
  const client = new window.Ably.Realtime({
    ...config.clientOptions,
    authUrl: config.authUrl,
    // ably-js's own error reports (jargon such as "80019 ... cause=[...]") stay off the console and off
    // the page, where the plain-words version already is; window.__authserverPage.libraryLog keeps them.
    logHandler: (message) => {
      record.libraryLog.push(`${clockTime(Date.now())} ${String(message).slice(0, 500)}`);
      if (record.libraryLog.length > 100) record.libraryLog.shift();
      if (gen === generation) checkSession(gen);
    },
  });
  realtime = client;
  record.clientsCreated += 1;
  client.connection.on((change) => {
    if (gen === generation) onConnectionChange(client, change);
  });
  ticker = window.setInterval(() => {
    if (gen !== generation) return;
    tokenArrived(client, Date.now());
    update();
  }, 1000);
  update();
}

// Close the current client but keep listening, so the page shows "closing" and "closed".
function closeClient() {
  if (ticker !== null) window.clearInterval(ticker);
  ticker = null;
  attachWhenConnected = null;
  forgetChannel();
  if (realtime) realtime.close();
}

// Replace the current client: close it and ignore everything it says from now on.
function discardClient() {
  const old = realtime;
  closeClient();
  generation += 1;
  realtime = null;
  if (old) old.connection.off();
}

function onConnectionChange(client, change) {
  const now = Date.now();
  const reason = change.reason || null;
  record.states.push(change.current);
  record.events.push({
    event: change.event || (change.current === change.previous ? 'update' : change.current),
    current: change.current,
    previous: change.previous,
    code: reason ? reason.code : null,
    at: now,
  });
  if (record.events.length > 500) record.events.splice(0, record.events.length - 500);
  if (record.states.length > 500) record.states.splice(0, record.states.length - 500);
  connectionChanged(state, change, now);
  tokenArrived(client, now);
  if (isSessionEnded(reason)) {
    endSession(reason);
    return;
  }
  if (change.current === 'failed') state.error = `The connection to Ably failed. ${describe(reason)}`;
  if (change.current === 'connected' && attachWhenConnected) {
    const name = attachWhenConnected;
    attachWhenConnected = null;
    attach(name);
  }
  update();
}

// ---------- one channel at a time ----------

function forgetChannel() {
  const old = channel;
  channel = null;
  state.channel = { ...state.channel, status: 'none', ops: null, error: '', messages: [], presence: [] };
  if (!old) return;
  old.off();
  old.unsubscribe();
  old.presence.unsubscribe();
  if (realtime && realtime.connection.state === 'connected') {
    old.detach().catch(() => {}); // leaving presence happens with the detach
  }
}

function onAttach(event) {
  event.preventDefault();
  const name = el.channelName.value.trim();
  if (name) attach(name);
}

// What may this caller do here? The service answers with authserver/capabilities.py: the page has
// no wildcard matcher of its own.
async function allowedOn(name) {
  try {
    const { body } = await fetchJson(`/session?channel=${encodeURIComponent(name)}`);
    return body && body.loggedIn && body.channel ? body.channel : null;
  } catch (err) {
    return null;
  }
}

async function attach(name) {
  const client = realtime;
  if (!client || !state.who) return;
  const clientId = state.who.clientId;
  forgetChannel();
  const ch = client.channels.get(name);
  channel = ch;
  channelChosen(state, name);
  update();
  const mine = () => channel === ch;
  ch.on((change) => {
    if (!mine()) return;
    state.channel.status = change.current;
    if (change.reason && (change.current === 'failed' || change.current === 'suspended')) {
      state.channel.error = describe(change.reason);
    }
    update();
  });
  const ops = await allowedOn(name);
  if (!mine()) return;
  state.channel.ops = ops;
  update();
  const may = (op) => allows(state.channel.ops, op);
  try {
    await ch.subscribe((message) => {
      if (!mine()) return;
      messagesAdded(state, [messageView(message, Date.now())]);
      update();
    }); // attaches
    await ch.presence.subscribe(() => refreshPresence(ch));
  } catch (err) {
    forgetRememberedChannel(clientId, name); // refused: a reload must not try it again
    if (mine()) {
      state.channel.error = describe(err);
      update();
    }
    return;
  }
  if (!mine()) return;
  state.channel.status = 'attached';
  rememberChannel(clientId, name); // only now: a channel that never attached is not remembered
  update();
  if (may('history')) {
    try {
      const page = await ch.history({ limit: HISTORY_LIMIT });
      if (mine()) messagesAdded(state, page.items.map((m) => messageView(m, Date.now())));
    } catch (err) {
      if (mine()) state.channel.error = `Could not load history: ${describe(err)}`;
    }
    update();
  }
  if (may('presence')) {
    try {
      await ch.presence.enter();
    } catch (err) {
      if (mine()) state.channel.error = `Could not enter presence: ${describe(err)}`;
    }
  }
  await refreshPresence(ch);
}

async function onPublish(event) {
  event.preventDefault();
  const ch = channel;
  const text = el.messageText.value;
  if (!ch || !text.trim() || !allows(state.channel.ops, 'publish')) return;
  state.channel.error = '';
  update();
  try {
    await ch.publish('message', text);
    if (el.messageText.value === text) el.messageText.value = '';
  } catch (err) {
    // A publish the capability forbids is NACKed by Ably with 40160: say so, never fail silently.
    if (channel === ch) {
      state.channel.error = `Publish refused. ${describe(err)}`;
      update();
    }
  }
}

async function refreshPresence(ch) {
  let members;
  try {
    members = await ch.presence.get();
  } catch (err) {
    return; // the channel went away meanwhile; its state line says why
  }
  if (channel !== ch) return;
  state.channel.presence = [...new Set(members.map((m) => m.clientId))].sort();
  update();
}

start();
