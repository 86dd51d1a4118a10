// React with ably-js's own AblyProvider and hooks (ably/react). The user logs in at the OpenID Connect
// provider (../oidc-login.js), and the one Ably client, given to AblyProvider, sends the access token to
// authserver's /auth as a bearer; ably-js renews the Ably token by itself.
import * as Ably from 'ably';
import { AblyProvider, ChannelProvider, useAbly, useChannel, useConnectionStateListener } from 'ably/react';
import { useEffect, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { finishLogin, startLogin } from '../../oidc-login.js';

const CHANNEL = 'chat:example';

function useRenewals(client) {
  const [renewals, setRenewals] = useState(0);
  useEffect(() => {
    let token = null;
    const timer = setInterval(() => {
      const now = client.auth.tokenDetails?.token; // null while a renewal is in flight
      if (!now || now === token) return;
      if (token !== null) setRenewals((n) => n + 1);
      token = now;
    }, 250);
    return () => clearInterval(timer);
  }, [client]);
  return renewals;
}

function Status() {
  const client = useAbly();
  const [state, setState] = useState(client.connection.state);
  const [last, setLast] = useState('-');
  const published = useRef(false);
  useConnectionStateListener((change) => setState(change.current));
  const { publish } = useChannel(CHANNEL, (message) => setLast(`${message.clientId}: ${message.data}`));
  const renewals = useRenewals(client);
  useEffect(() => {
    if (state !== 'connected' || published.current) return;
    published.current = true;
    publish('greeting', 'hello from React');
  }, [state, publish]);
  return (
    <dl>
      <dt>Connection</dt><dd id="state" aria-live="polite">{state}</dd>
      <dt>clientId</dt><dd id="client-id">{state === 'connected' ? client.auth.clientId : '-'}</dd>
      <dt>Token renewals</dt><dd id="renewals">{renewals}</dd>
      <dt>Last message</dt><dd id="message">{last}</dd>
    </dl>
  );
}

function App({ config, accessToken, error }) {
  const redirectUri = new URL('./', location.href).href;
  const [client] = useState(() => accessToken && new Ably.Realtime({
    ...config.clientOptions, // how ably-js reaches the development sandbox; {} against real Ably
    authUrl: config.authUrl,
    authHeaders: { authorization: `Bearer ${accessToken}` }, // lower case: see docs/troubleshooting.md
  }));
  return (
    <>
      <h1>React, AblyProvider and hooks</h1>
      {error && <p id="state">failed: {error}</p>}
      {!client && !error && (
        <>
          <p id="state">not logged in</p>
          <button type="button" onClick={() => startLogin(config, redirectUri)}>Log in with Dev IdP</button>
        </>
      )}
      {client && (
        <AblyProvider client={client}>
          <ChannelProvider channelName={CHANNEL}>
            <Status />
          </ChannelProvider>
        </AblyProvider>
      )}
    </>
  );
}

const config = await (await fetch('/dev-config.json')).json();
let accessToken = null;
let error = null;
try {
  accessToken = await finishLogin(config, new URL('./', location.href).href);
} catch (failure) {
  error = failure.message;
}
createRoot(document.getElementById('root')).render(<App config={config} accessToken={accessToken} error={error} />);
