// An Ably capability (resource -> operations) as rows of a table a person can read.

/** Parse a capability given as JSON text or an object; anything else is an empty capability. */
export function parseCapability(value) {
  try {
    const parsed = typeof value === 'string' ? JSON.parse(value) : value;
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : {};
  } catch (err) {
    return {};
  }
}

/** Sorted `{resource, operations}` rows; `["*"]` reads "everything". */
export function capabilityRows(capability) {
  const parsed = parseCapability(capability);
  return Object.keys(parsed)
    .sort()
    .map((resource) => {
      const ops = [].concat(parsed[resource]).map(String).sort();
      return { resource, operations: ops.includes('*') ? 'everything (*)' : ops.join(', ') };
    });
}

/**
 * What the service said the caller may do on one channel (GET /session?channel=), in words.
 * The page never matches channel names against the capability itself: the service decides.
 */
export function channelOperations(answer) {
  if (!answer) return '–';
  if (answer.all) return 'everything (*)';
  return answer.operations && answer.operations.length ? answer.operations.join(', ') : 'nothing';
}

/** Whether the service's answer for a channel (GET /session?channel=) allows `operation` there; no answer: no. */
export function allows(answer, operation) {
  return Boolean(answer && (answer.all || (answer.operations || []).includes(operation)));
}
