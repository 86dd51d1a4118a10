// Presence carries the member's current user claim: after an in-band AUTH with another
// ably.channel.* claim the member's presence follows it (an UPDATE to presence subscribers, the new
// claim in get() and SYNC), and the LEAVE the sandbox synthesises when the member's connection goes
// carries it too.  One JSON result line; Python asserts on it.
import { authOptions, closeAll, main, realtime, settings, until } from './lib.mjs';

await main(async () => {
  const channelName = `js-pclaims-${settings.suffix}`;
  const claim = (value) => JSON.stringify({ [`ably.channel.${channelName}`]: value });
  const user = `js-pmod-${settings.suffix}`;
  const member = realtime(authOptions({ user, claims: claim('before') }));
  const watcher = realtime(authOptions({ user: `js-pwatch-${settings.suffix}` }));
  let late = null;
  try {
    await Promise.all([member.connection.once('connected'), watcher.connection.once('connected')]);
    const watched = watcher.channels.get(channelName);
    const events = [];
    await watched.presence.subscribe((msg) => events.push({ action: msg.action, extras: msg.extras || null }));
    await member.channels.get(channelName).presence.enter('here');
    await until(() => events.length >= 1, 5000, 'enter');

    await member.auth.authorize(null, authOptions({ user, claims: claim('after') }));
    await until(() => events.length >= 2, 5000, 'the update after AUTH');
    const members = (await watched.presence.get()).map((m) => m.extras || null);
    late = realtime(authOptions({ user: `js-plate-${settings.suffix}` }));
    await late.connection.once('connected');
    const synced = (await late.channels.get(channelName).presence.get()).map((m) => m.extras || null);

    await closeAll(member);
    await until(() => events.length >= 3, 5000, 'the leave');
    return { events, members, synced };
  } finally {
    await closeAll(...[member, watcher, late].filter(Boolean));
  }
}, 20000);
