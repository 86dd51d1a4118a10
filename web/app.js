// The authserver login page: log in, connect to Ably with authUrl '/auth', stay connected while
// tokens renew, and use one channel within the token's capability. Plain JS, no build step.
// Loaded with `defer`; no inline script or style anywhere (the Content Security Policy forbids both).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    target: $('ably-target'),
    error: $('error'),
    notice: $('notice'),
    loginSection: $('login-section'),
    loginForm: $('login-form'),
    username: $('username'),
    password: $('password'),
    loginButton: $('login-button'),
    state: $('connection-state'),
    stateReason: $('state-reason'),
    clientId: $('client-id'),
    expiry: $('token-expiry'),
    expiryAt: $('token-expiry-at'),
    renewals: $('renewal-count'),
    capability: $('capability'),
    logoutButton: $('logout-button'),
    channelSection: $('channel-section'),
    attachForm: $('attach-form'),
    channelName: $('channel-name'),
    attachButton: $('attach-button'),
    channelState: $('channel-state'),
    channelOps: $('channel-ops'),
    channelError: $('channel-error'),
    publishForm: $('publish-form'),
    messageText: $('message-text'),
    publishButton: $('publish-button'),
    messages: $('message-list'),
    presence: $('presence-list'),
  };

  const MAX_MESSAGES = 200;
  const JSON_HEADERS = { 'Content-Type': 'application/json', Accept: 'application/json' };

  // What the page has shown, for people debugging and for the end-to-end test (read-only outside).
  const pageLog = { states: [], events: [], clientsCreated: 0 };
  window.__authserverPage = {
    get states() { return pageLog.states.slice(); },
    get events() { return pageLog.events.slice(); },
    get clientsCreated() { return pageLog.clientsCreated; },
    get renewals() { return session.renewals; },
  };

  let config = null; // from GET /client-config
  let loggingIn = false;
  let ticker = null;
  // The one live client and what belongs to it. `generation` makes callbacks of a replaced client inert.
  let generation = 0;
  let realtime = null;
  const session = { token: null, renewals: 0, expires: null, capability: {} };
  let channel = null;

  // ---------- messages to the user ----------

  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = !text;
  }

  function showNotice(text) {
    el.notice.textContent = text;
    el.notice.hidden = !text;
  }

  function showChannelError(text) {
    el.channelError.textContent = text;
    el.channelError.hidden = !text;
  }

  function describe(err) {
    if (err && typeof err === 'object' && 'code' in err && err.code) {
      const cause = err.cause && err.cause.message ? ` (cause: ${err.cause.code || ''} ${err.cause.message})` : '';
      return `Ably error ${err.code}: ${err.message}${cause}`;
    }
    return String((err && err.message) || err);
  }

  // ---------- start-up: configuration, ably-js, an existing session ----------

  async function fetchJson(url, options) {
    const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store', ...options });
    let body = null;
    if ((response.headers.get('content-type') || '').includes('application/json')) {
      body = await response.json().catch(() => null);
    }
    return { response, body };
  }

  function errorText(body, status) {
    const info = body && body.error;
    if (info && info.message) return info.code ? `${info.message} (${info.code})` : info.message;
    return `HTTP ${status}`;
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

  async function start() {
    el.loginForm.addEventListener('submit', onLogin);
    el.logoutButton.addEventListener('click', onLogout);
    el.attachForm.addEventListener('submit', onAttach);
    el.publishForm.addEventListener('submit', onPublish);
    showSignedOut();
    try {
      const { response, body } = await fetchJson('/client-config');
      if (!response.ok || !body) throw new Error(`HTTP ${response.status}`);
      config = body;
    } catch (err) {
      showError('Cannot reach the server to load the page settings. Check your connection and reload the page.');
      return;
    }
    el.target.textContent = config.target || 'Ably';
    try {
      await loadAblyJs(config.ablyJs);
    } catch (err) {
      showError(`The Ably client library could not be loaded (${err.message}). Reload the page to try again.`);
      return;
    }
    el.loginButton.disabled = false;
    // Still logged in from before a reload? Then connect straight away.
    try {
      const { response, body } = await fetchJson('/session');
      if (response.ok && body && body.clientId) startClient(body);
    } catch (err) {
      showError('Cannot reach the server. Check your connection and try again.');
    }
  }

  // ---------- log in / log out ----------

  async function onLogin(event) {
    event.preventDefault();
    if (loggingIn) return; // a double submit must not create a second client
    showError('');
    showNotice('');
    const username = el.username.value.trim();
    const password = el.password.value;
    if (!username || !password) {
      showError('Enter your username and password.');
      (username ? el.password : el.username).focus();
      return;
    }
    loggingIn = true;
    el.loginButton.disabled = true;
    try {
      let result;
      try {
        result = await fetchJson('/login', {
          method: 'POST',
          headers: JSON_HEADERS,
          body: JSON.stringify({ username, password }),
        });
      } catch (err) {
        showError('Cannot reach the server. Check your connection and try again.');
        return;
      }
      const { response, body } = result;
      if (response.status === 401) {
        showError('Wrong username or password.');
        el.password.value = '';
        el.password.focus();
        return;
      }
      if (!response.ok || !body) {
        showError(`Login failed: ${errorText(body, response.status)}`);
        return;
      }
      el.password.value = '';
      startClient(body);
    } finally {
      loggingIn = false;
      el.loginButton.disabled = false;
    }
  }

  async function onLogout() {
    el.logoutButton.disabled = true;
    // Close first, so no token renewal races the end of the session.
    closeClient();
    showSignedOut();
    try {
      const { response, body } = await fetchJson('/logout', { method: 'POST', headers: JSON_HEADERS, body: '{}' });
      if (!response.ok) {
        showError(`Logging out failed: ${errorText(body, response.status)}`);
        return;
      }
      showNotice('Session ended: you are logged out.');
    } catch (err) {
      showError('Cannot reach the server to end the session. The connection to Ably is closed.');
    } finally {
      el.logoutButton.disabled = false;
    }
  }

  function endSession(reason) {
    closeClient();
    showSignedOut();
    showNotice(`Session ended, please log in again. (${reason})`);
  }

  function showSignedOut() {
    el.loginSection.hidden = false;
    el.logoutButton.hidden = true;
    el.channelSection.hidden = true;
  }

  function showSignedIn() {
    el.loginSection.hidden = true;
    el.logoutButton.hidden = false;
    el.channelSection.hidden = false;
  }

  // ---------- the Ably client ----------

  function startClient(who) {
    discardClient(); // one client at a time: the old one is closed before a new one exists
    const gen = ++generation;
    Object.assign(session, { token: null, renewals: 0, expires: null, capability: {} });
    renderToken();
    el.clientId.textContent = who.clientId || '–';
    showState('initialized', null);
    showSignedIn();

    const client = new window.Ably.Realtime({ ...config.clientOptions, authUrl: config.authUrl });
    realtime = client;
    pageLog.clientsCreated += 1;
    client.connection.on((change) => {
      if (gen === generation) onConnectionChange(client, change);
    });
    ticker = window.setInterval(() => {
      if (gen === generation) checkToken(client);
    }, 1000);
  }

  // Close the current client but keep listening, so the page shows "closing" and "closed".
  function closeClient() {
    if (ticker !== null) window.clearInterval(ticker);
    ticker = null;
    forgetChannel();
    if (realtime) realtime.close();
    el.expiry.textContent = '–';
    el.expiryAt.textContent = '';
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
    const reason = change.reason || null;
    remember(pageLog.events, {
      event: change.event || (change.current === change.previous ? 'update' : change.current),
      current: change.current,
      previous: change.previous,
      code: reason ? reason.code : null,
      at: Date.now(),
    });
    showState(change.current, reason);
    if (change.current === 'connected') {
      checkToken(client);
      el.publishButton.disabled = channel === null;
    } else {
      el.publishButton.disabled = true;
    }
    if (isSessionEnded(reason)) {
      endSession(`${reason.code}: ${reason.message}`);
    } else if (change.current === 'failed') {
      showError(`The connection to Ably failed: ${describe(reason)}`);
    }
  }

  // authUrl answered 401 (no session any more): ably-js reports 80019 with the service's 40101 as the
  // cause and would retry every 15 s forever; we stop and say so. A network failure also arrives as
  // 80019, but with a code-less cause normalised to 40170: that one stays a transient disconnection.
  function isSessionEnded(reason) {
    if (!reason || reason.code !== 80019 || !reason.cause) return false;
    const cause = reason.cause;
    return cause.code === 40101 || (cause.statusCode === 401 && cause.code !== 40170);
  }

  function remember(list, entry) {
    list.push(entry);
    if (list.length > 500) list.splice(0, list.length - 500); // a long session must not grow without bound
  }

  function showState(state, reason) {
    remember(pageLog.states, state);
    el.state.textContent = state;
    el.state.dataset.state = state;
    // 80017 is an ordinary close (ours): nothing to explain.
    const show = reason && state !== 'connected' && reason.code !== 80017 ? describe(reason) : '';
    el.stateReason.textContent = show ? `Reason: ${show}` : '';
    el.stateReason.hidden = !show;
  }

  // Called on every connection event and once a second: a new token object means a renewal.
  function checkToken(client) {
    const details = client.auth.tokenDetails;
    if (details && details.token !== session.token) {
      if (session.token !== null) session.renewals += 1;
      session.token = details.token;
      session.expires = details.expires || null;
      session.capability = parseCapability(details.capability);
      el.clientId.textContent = client.auth.clientId || details.clientId || '–';
      el.capability.textContent = formatCapability(session.capability);
      el.expiryAt.textContent = session.expires ? `(at ${new Date(session.expires).toLocaleTimeString()})` : '';
      renderOps();
    }
    renderToken();
  }

  function renderToken() {
    el.renewals.textContent = String(session.renewals);
    if (session.expires === null) {
      el.expiry.textContent = '–';
      if (session.token === null) {
        el.capability.textContent = '–';
        el.expiryAt.textContent = '';
      }
      return;
    }
    const seconds = Math.max(0, Math.round((session.expires - Date.now()) / 1000));
    el.expiry.textContent = `${seconds} s`;
  }

  function parseCapability(text) {
    try {
      const value = typeof text === 'string' ? JSON.parse(text) : text;
      return value && typeof value === 'object' ? value : {};
    } catch (err) {
      return {};
    }
  }

  function formatCapability(capability) {
    const lines = Object.keys(capability)
      .sort()
      .map((resource) => `${resource}: ${[].concat(capability[resource]).join(', ')}`);
    return lines.length ? lines.join('\n') : '(none)';
  }

  // Ably's channel wildcards: '*' is all channels; a '*' segment matches one segment, a trailing
  // one matches one or more (spec 3.2). Only used to explain the capability; Ably enforces it.
  function resourceMatches(resource, name) {
    if (resource === '*' || resource === '[*]*') return !name.startsWith('[');
    if (resource.startsWith('[')) return false;
    const want = resource.split(':');
    const have = name.split(':');
    for (let i = 0; i < want.length; i += 1) {
      if (want[i] === '*' && i === want.length - 1) return have.length > i;
      if (i >= have.length || (want[i] !== '*' && want[i] !== have[i])) return false;
    }
    return want.length === have.length;
  }

  function allowedOps(name) {
    const ops = new Set();
    for (const [resource, list] of Object.entries(session.capability)) {
      if (resourceMatches(resource, name)) [].concat(list).forEach((op) => ops.add(op));
    }
    return ops;
  }

  function renderOps() {
    const name = channel ? channel.name : el.channelName.value.trim();
    const ops = name ? [...allowedOps(name)].sort() : [];
    el.channelOps.textContent = ops.length ? ops.join(', ') : 'nothing';
  }

  // ---------- one channel at a time ----------

  function forgetChannel() {
    const old = channel;
    channel = null;
    el.publishButton.disabled = true;
    el.channelState.textContent = 'none';
    el.messages.replaceChildren();
    el.presence.replaceChildren();
    showChannelError('');
    if (!old) return;
    old.off();
    old.unsubscribe();
    old.presence.unsubscribe();
    if (realtime && realtime.connection.state === 'connected') {
      old.detach().catch(() => {}); // leaving presence happens with the detach
    }
  }

  async function onAttach(event) {
    event.preventDefault();
    const name = el.channelName.value.trim();
    const client = realtime;
    if (!name || !client) return;
    forgetChannel();
    const ch = client.channels.get(name);
    channel = ch;
    renderOps();
    el.channelState.textContent = `${name} (attaching)`;
    ch.on((change) => {
      if (channel !== ch) return;
      el.channelState.textContent = `${name} (${change.current})`;
      if (change.reason && (change.current === 'failed' || change.current === 'suspended')) {
        showChannelError(describe(change.reason));
      }
    });
    try {
      await ch.subscribe(addMessage); // attaches
      await ch.presence.subscribe(() => refreshPresence(ch));
    } catch (err) {
      if (channel === ch) showChannelError(describe(err));
      return;
    }
    if (channel !== ch) return;
    el.channelState.textContent = `${name} (attached)`;
    el.publishButton.disabled = client.connection.state !== 'connected';
    const ops = allowedOps(name);
    if (ops.has('presence') || ops.has('*')) {
      try {
        await ch.presence.enter();
      } catch (err) {
        if (channel === ch) showChannelError(`Could not enter presence: ${describe(err)}`);
      }
    }
    await refreshPresence(ch);
  }

  async function onPublish(event) {
    event.preventDefault();
    const ch = channel;
    const text = el.messageText.value;
    if (!ch || !text.trim()) return;
    showChannelError('');
    try {
      await ch.publish('message', text);
      if (el.messageText.value === text) el.messageText.value = '';
    } catch (err) {
      // A publish the capability forbids is NACKed by Ably with 40160: say so, never fail silently.
      if (channel === ch) showChannelError(`Publish refused: ${describe(err)}`);
    }
  }

  function addMessage(message) {
    const item = document.createElement('li');
    item.dataset.clientId = message.clientId || '';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = message.clientId || '(anonymous)';
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = typeof message.data === 'string' ? message.data : JSON.stringify(message.data);
    const time = document.createElement('time');
    const at = new Date(message.timestamp || Date.now());
    time.dateTime = at.toISOString();
    time.textContent = at.toLocaleTimeString();
    item.append(who, text, time);
    el.messages.append(item);
    while (el.messages.children.length > MAX_MESSAGES) el.messages.firstElementChild.remove();
    item.scrollIntoView({ block: 'nearest' });
  }

  async function refreshPresence(ch) {
    let members;
    try {
      members = await ch.presence.get();
    } catch (err) {
      return; // the channel went away meanwhile; its state line says why
    }
    if (channel !== ch) return;
    const ids = [...new Set(members.map((m) => m.clientId))].sort();
    el.presence.replaceChildren(
      ...ids.map((id) => {
        const item = document.createElement('li');
        item.textContent = id;
        item.dataset.clientId = id;
        return item;
      }),
    );
  }

  el.channelName.addEventListener('input', () => {
    if (!channel) renderOps();
  });

  start();
})();
