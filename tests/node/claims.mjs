// JWT channel claims: ably.channel.* user claims arrive as extras.userClaim on another client's messages
// and presence (a forged one is overwritten), and a publish flood beyond
// ably.limits.publish.perAttachment.maxRate.* gets 42911 NACKs while the connection stays connected.
import { authOptions, closeAll, errorOf, main, realtime, recordStates, settings, sleep, until } from './lib.mjs';

await main(async () => {
  const channelName = `js-claims-${settings.suffix}`;
  const floodName = `js-flood-${settings.suffix}`;
  const claims = JSON.stringify({
    'ably.channel.*': 'anywhere',
    [`ably.channel.${channelName}`]: '{"mod":true}',
    [`ably.limits.publish.perAttachment.maxRate.${floodName}`]: 2,
  });
  const moderator = realtime(authOptions({ user: 'js-mod', claims }));
  const watcher = realtime(authOptions({ user: 'js-watcher' }));
  const changes = recordStates(moderator);
  try {
    await Promise.all([moderator.connection.once('connected'), watcher.connection.once('connected')]);
    const watcherChannel = watcher.channels.get(channelName);
    const received = [];
    const presence = [];
    await watcherChannel.subscribe((msg) => received.push({ name: msg.name, extras: msg.extras }));
    await watcherChannel.presence.subscribe((msg) => presence.push({ action: msg.action, extras: msg.extras }));

    const channel = moderator.channels.get(channelName);
    await channel.publish('plain', 'hello');
    await channel.publish({ name: 'forged', data: 'x', extras: { userClaim: 'admin', headers: { a: 'b' } } });
    await channel.presence.enter('here');
    await until(() => received.length >= 2 && presence.length >= 1, 5000, 'messages and presence');
    const members = await watcherChannel.presence.get();

    const flood = moderator.channels.get(floodName);
    await flood.attach();
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => flood.publish('m', `flood ${i}`)));
    const stateAfterFlood = moderator.connection.state;
    const channelStateAfterFlood = flood.state;
    await sleep(1100);
    let afterWait = null;
    try {
      await flood.publish('after', 'a second later');
      afterWait = 'ok';
    } catch (err) {
      afterWait = errorOf(err);
    }
    return {
      received,
      presence,
      members: members.map((m) => ({ clientId: m.clientId, extras: m.extras })),
      accepted: outcomes.filter((o) => o.status === 'fulfilled').length,
      refused: outcomes.filter((o) => o.status === 'rejected').map((o) => errorOf(o.reason)),
      stateAfterFlood,
      channelStateAfterFlood,
      afterWait,
      changes,
    };
  } finally {
    await closeAll(moderator, watcher);
  }
}, 20000);
