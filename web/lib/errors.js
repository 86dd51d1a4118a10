// Ably and authserver error codes in plain words (docs/errors.md, "the client contract"; Ably's codes at
// https://ably.com/docs/platform/errors/codes). Pure: no DOM.

const PLAIN = {
  40000: 'The request was malformed.',
  40003: 'The request asked for a token lifetime the service does not accept.',
  40009: 'The request was too large.',
  40012: 'That name is not allowed (use letters, digits and . _ @ + -).',
  40101: 'Your session has ended. Log in again.',
  40102: 'The service refused a token for a client ID that is not yours.',
  40141: 'Your token was revoked.',
  40142: 'The token expired; the client fetches a new one and reconnects.',
  40160: 'Not allowed: your token does not permit this on this channel.',
  40170: 'Could not get a token from the service (is it reachable?).',
  40300: 'This account is disabled. Ask an administrator to enable it.',
  40301: 'You were logged out from another device.',
  40302: 'Your password was changed; log in again.',
  40303: 'Your account was removed.',
  40304: 'You were logged out in another window.',
  40305: 'You were logged out at your identity provider.',
  42910: 'Too many failed logins. Wait a few minutes, then try again.',
  50300: 'The service is busy. Try again in a moment.',
  80002: 'Disconnected from Ably; reconnecting.',
  80003: 'Disconnected from Ably; reconnecting.',
  80008: 'The connection could not be resumed; a new one was made.',
  80017: 'Connection closed.',
  80019: 'Could not get a token from the service.',
};

/** A plain sentence for an error code, or null when there is none. */
export function plainWords(code) {
  return Object.prototype.hasOwnProperty.call(PLAIN, code) ? PLAIN[code] : null;
}

function sentence(text) {
  const trimmed = String(text || '').trim();
  if (!trimmed) return '';
  const first = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/**
 * The error that matters in an Ably reason. ably-js reports a failed authUrl call as 80019 with the
 * service's own error as `cause` (ConnectionManager.actOnErrorFromAuthorize): the cause is what a
 * person needs to read, not the generic wrapper.
 */
export function rootError(reason) {
  if (!reason || typeof reason !== 'object') return null;
  if (reason.code === 80019 && reason.cause && typeof reason.cause === 'object' && reason.cause.code) {
    return reason.cause;
  }
  return reason;
}

/**
 * `{code, text}` for showing an error once: the service's own message when it is the service that
 * answered (authserver's messages are written for people), else the plain words for the code, else
 * the message as given.
 */
export function explain(reason) {
  const root = rootError(reason);
  if (!root) return null;
  const code = typeof root.code === 'number' ? root.code : null;
  const fromService = root !== reason; // the cause of an 80019: authserver's own answer
  const text =
    (fromService && root.message ? sentence(root.message) : null) || plainWords(code) || sentence(root.message) ||
    'Something went wrong.';
  return { code, text };
}

/** "Text (code)" in one line. */
export function describe(reason) {
  const info = explain(reason);
  if (!info) return '';
  return info.code ? `${info.text} (${info.code})` : info.text;
}

// Why the service ended the page's session, in the words the page shows (docs/errors.md, "the client
// contract": 403 with a code per reason, final, so ably-js stops; 40300 on /auth is a disabled account).
const ENDED = {
  40300: 'Your account was disabled.',
  40301: 'You were logged out from another device.',
  40302: 'Your password was changed; log in again.',
  40303: 'Your account was removed.',
  40304: 'You were logged out in another window.',
  40305: 'You were logged out at your identity provider.',
};

/** The service's refusal inside an authUrl failure (80019), or null. */
function refusal(reason) {
  if (!reason || reason.code !== 80019 || !reason.cause || typeof reason.cause !== 'object') return null;
  return reason.cause;
}

/** Plain words for a session the service ended for a known reason, or null. */
function endedWords(cause) {
  if (!cause || !Object.prototype.hasOwnProperty.call(ENDED, cause.code)) return null;
  if (cause.code === 40300 && !/disabled/i.test(String(cause.message || ''))) return null;
  return ENDED[cause.code];
}

/**
 * The session behind the page is gone: the authUrl answered 401 with authserver's 40101, or 403 with
 * the reason it ended (logged out elsewhere or at the identity provider, password changed, account
 * disabled or removed). A network
 * failure also arrives as 80019, but its cause has no service code (40170): that one is transient.
 */
export function isSessionEnded(reason) {
  const cause = refusal(reason);
  if (!cause) return false;
  return cause.code === 40101 || (cause.statusCode === 401 && cause.code !== 40170) || endedWords(cause) !== null;
}

/**
 * The notice after the service refused to renew a session's token. A known reason is one plain
 * sentence ("You were logged out from another device."), never an error number; otherwise the
 * service's reason, framed as the end of the session ("Session has ended; log in again. (40101)").
 */
export function sessionEndedText(reason) {
  const words = endedWords(refusal(reason));
  if (words) return words;
  const info = explain(reason);
  if (!info) return 'Your session has ended. Log in again.';
  const code = info.code ? ` (${info.code})` : '';
  if (/session/i.test(info.text)) return `${info.text}${code}`;
  const again = /log in/i.test(info.text) ? '' : ' Log in again.';
  return `Your session has ended: ${info.text[0].toLowerCase()}${info.text.slice(1)}${again}${code}`;
}

/** Token errors Ably answers with a renewal and a reconnect (40140-40149, RTN15h). */
export function isTokenError(reason) {
  return Boolean(reason) && reason.code >= 40140 && reason.code < 40150;
}

/** What a failed login response means for the person at the keyboard. */
export function loginFailure(status, body) {
  const info = body && body.error;
  if (status === 401) {
    // The service's own reason when it gives one beyond the usual refusal (e.g. demo login does not
    // apply to a registered account's name); otherwise the one sentence a person expects.
    const message = info && typeof info.message === 'string' ? info.message.trim() : '';
    if (!message || /^invalid username or password\.?$/i.test(message)) return 'Wrong username or password.';
    return `${sentence(message)} (${typeof info.code === 'number' ? info.code : 40101})`;
  }
  const code = info && typeof info.code === 'number' ? info.code : null;
  if (code === 42910 || code === 50300) return `${plainWords(code)} (${code})`;
  if (info && info.message) return code ? `${sentence(info.message)} (${code})` : sentence(info.message);
  return `The service answered HTTP ${status}. Try again.`;
}
