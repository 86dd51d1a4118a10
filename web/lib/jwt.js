// Decoding a JWT for display only: nothing here verifies a signature (Ably does that), and nothing
// here logs the token.

function base64UrlToText(part) {
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
  const binary = atob(base64);
  const bytes = Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

/** `{header, claims}` of a JWT, or null when the string is not a JWT with JSON header and claims. */
export function decodeJwt(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[0] || !parts[1]) return null;
  try {
    const header = JSON.parse(base64UrlToText(parts[0]));
    const claims = JSON.parse(base64UrlToText(parts[1]));
    if (!header || typeof header !== 'object' || !claims || typeof claims !== 'object') return null;
    return { header, claims };
  } catch (err) {
    return null;
  }
}

const SECOND_CLAIMS = new Set(['iat', 'exp', 'nbf']);

/**
 * Claims as [name, shown value] rows: times as ISO-like local clock with seconds, the capability
 * left out (it has a table of its own), everything else as JSON.
 */
export function claimRows(claims, formatTime) {
  return Object.keys(claims)
    .filter((name) => name !== 'x-ably-capability')
    .sort()
    .map((name) => {
      const value = claims[name];
      if (SECOND_CLAIMS.has(name) && typeof value === 'number') return [name, `${value} (${formatTime(value * 1000)})`];
      return [name, typeof value === 'string' ? value : JSON.stringify(value)];
    });
}
