// k6 script of bench/openloop.py (run by it; not meant to be run by hand).
//
// The whole plan comes from the environment, as JSON in OPENLOOP_PLAN:
//   {"kind": "capacity", "url", "headers", "timeout", "vus", "warmup", "seconds", "out"}
//     a closed loop: `vus` VUs each sending the next request when the last is answered (constant-vus),
//     a warm-up scenario first; counts the 200s of the measured part.
//   {"kind": "steps", "url", "headers", "probe", "timeout", "probe_rate", "out",
//    "steps": [{"id", "rate", "seconds", "start", "vus", "max_vus", "windows"}]}
//     an open loop: one constant-arrival-rate scenario per step (requests started at `rate` per second
//     whatever the answers, until `max_vus` are waiting), and beside each a low constant rate of `probe`
//     (the health check) at `probe_rate` per second.
// Each request is counted under its step (and, for steps with `windows`, the 1-second window since
// the step began in which it was SENT), by status: 200, 503, other status, timeout (no answer within `timeout` s), error (no answer).
// Latency is the request's whole time on the client: waiting for a connection, connecting, sending,
// waiting, receiving. handleSummary writes the metrics of this script (not k6's own) to `out`.
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';

const PLAN = JSON.parse(__ENV.OPENLOOP_PLAN);
const PARAMS = { headers: PLAN.headers || {}, timeout: `${PLAN.timeout}s`, responseType: 'none' };
const PROBE = { timeout: `${PLAN.timeout}s`, responseType: 'none' };
const TIMEOUT_CODE = 1050; // k6's error_code for "request timeout"

// One set of metrics per step, named (k6 matches every sample of a metric against the tag filters of
// its sub-metrics, which costs the generator CPU per request; and every VU builds every metric object,
// so they are kept few). The 1-second windows of the steps that have them (`windows: true`) are
// sub-metrics of two metrics that only those steps feed, tagged {step, w}.
const metrics = {};
const win200 = new Trend('win_lat_200', true);
const winBad = new Counter('win_n_bad');
if (PLAN.kind === 'capacity') {
  metrics.cap = { ok: new Counter('cap_200'), other: new Counter('cap_other'), lat: new Trend('cap_lat', true) };
} else {
  for (const step of PLAN.steps) {
    const id = step.id;
    metrics[id] = {
      lat200: new Trend(`${id}_lat_200`, true),
      lat503: new Trend(`${id}_lat_503`, true),
      n200: new Counter(`${id}_n_200`),
      n503: new Counter(`${id}_n_503`),
      other: new Counter(`${id}_n_other`),
      timeouts: new Counter(`${id}_n_timeout`),
      errors: new Counter(`${id}_n_error`),
      probe: new Trend(`${id}_probe`, true),
      probeBad: new Counter(`${id}_probe_bad`),
      windows: step.windows ? Math.ceil(step.seconds) : 0,
    };
  }
}

function scenarios() {
  if (PLAN.kind === 'capacity') {
    return {
      warmup: { executor: 'constant-vus', exec: 'closed', vus: PLAN.vus, duration: `${PLAN.warmup}s`, gracefulStop: '0s' },
      cap: {
        executor: 'constant-vus',
        exec: 'closed',
        vus: PLAN.vus,
        duration: `${PLAN.seconds}s`,
        startTime: `${PLAN.warmup}s`,
        gracefulStop: `${PLAN.timeout + 1}s`,
      },
    };
  }
  const all = {};
  for (const step of PLAN.steps) {
    const common = { executor: 'constant-arrival-rate', timeUnit: '1s', startTime: `${step.start}s` };
    all[step.id] = {
      ...common,
      exec: 'load',
      rate: step.rate,
      duration: `${step.seconds}s`,
      preAllocatedVUs: step.vus,
      maxVUs: step.max_vus,
      gracefulStop: `${PLAN.timeout + 1}s`,
    };
    all[`${step.id}_probe`] = {
      ...common,
      exec: 'probe',
      rate: PLAN.probe_rate,
      duration: `${step.seconds}s`,
      preAllocatedVUs: 4,
      maxVUs: Math.max(4, Math.ceil(PLAN.probe_rate * (PLAN.timeout + 1))),
      gracefulStop: `${PLAN.timeout + 1}s`,
      tags: { step: step.id },
    };
  }
  return all;
}

const thresholds = {};
if (PLAN.kind === 'steps') {
  // Sub-metrics (a threshold that always holds makes k6 keep one): requests k6 could not start on
  // time (no free VU), and the windows.
  for (const step of PLAN.steps) {
    thresholds[`dropped_iterations{scenario:${step.id}}`] = ['count>=0'];
    for (let w = 0; w < metrics[step.id].windows; w++) {
      thresholds[`win_lat_200{step:${step.id},w:${w}}`] = ['max>=0'];
      thresholds[`win_n_bad{step:${step.id},w:${w}}`] = ['count>=0'];
    }
  }
}

export const options = {
  scenarios: scenarios(),
  thresholds,
  discardResponseBodies: true,
  systemTags: ['scenario', 'status'],
  summaryTrendStats: ['count', 'med', 'p(99)', 'max'],
};

// Logged once k6 has created its VUs, as the scenarios begin: bench/openloop.py times the CPU it
// samples (server and k6, per step) from here.
export function setup() {
  console.log('openloop: steps begin');
}

function elapsed(res) {
  const t = res.timings;
  return t.blocked + t.connecting + t.duration;
}

export function closed() {
  const res = http.get(PLAN.url, PARAMS);
  if (exec.scenario.name !== 'cap') return;
  if (res.status === 200) {
    metrics.cap.ok.add(1);
    metrics.cap.lat.add(elapsed(res));
  } else {
    metrics.cap.other.add(1);
  }
}

export function load() {
  const m = metrics[exec.scenario.name];
  const sent = Date.now();
  const res = http.get(PLAN.url, PARAMS);
  let tags = null;
  if (m.windows) {
    const w = Math.min(Math.floor((sent - exec.scenario.startTime) / 1000), m.windows - 1);
    tags = { step: exec.scenario.name, w: String(w) };
  }
  if (res.status === 200) {
    const ms = elapsed(res);
    m.n200.add(1);
    m.lat200.add(ms);
    if (tags) win200.add(ms, tags);
    return;
  }
  if (tags) winBad.add(1, tags);
  if (res.status === 503) {
    m.n503.add(1);
    m.lat503.add(elapsed(res));
  } else if (res.status !== 0) {
    m.other.add(1);
  } else if (res.error_code === TIMEOUT_CODE) {
    m.timeouts.add(1);
  } else {
    m.errors.add(1);
  }
}

export function probe() {
  const m = metrics[exec.scenario.name.replace(/_probe$/, '')];
  const res = http.get(PLAN.probe, PROBE);
  if (res.status === 200) m.probe.add(elapsed(res));
  else m.probeBad.add(1);
}

export function handleSummary(data) {
  const out = {};
  for (const [name, metric] of Object.entries(data.metrics)) {
    if (metric.type === 'counter') out[name] = metric.values.count;
    else if (metric.type === 'trend') out[name] = metric.values;
    // A sub-metric that had no sample is not in data.metrics: a window with nothing is absent.
  }
  out.vus_max = data.metrics.vus_max ? data.metrics.vus_max.values.max : 0;
  return { [PLAN.out]: JSON.stringify(out), stdout: '' };
}
