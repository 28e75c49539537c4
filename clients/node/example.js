// pg_barrier from Node.js with node-postgres (pg): one barrier, eight tasks, one wake-up.
//
//   npm ci
//   PG_BARRIER_DSN=postgres://user@host:5432/db node example.js
//
// What it does (and checks, so it doubles as a test: any failure exits non-zero):
//   1. a listener connection LISTENs on its own channel, node_example;
//   2. a barrier expecting 8 tasks is enqueued, with a callback and that channel;
//   3. 4 worker connections report the 8 slots concurrently, in shuffled order, and one slot is
//      delivered twice (as a queue may redeliver a task): the second report answers 'duplicate';
//   4. exactly one report answers 'complete', carrying all 8 results in slot order and the
//      callback;
//   5. the listener receives the NOTIFY {"id": ..., "status": "complete", "round": 1};
//   6. barrier_status shows the barrier complete, and barrier_take hands the completion out
//      once: the first take returns a row, the second returns none.
//
// Every value goes to the server as a bind parameter ($1, $2, ...), never inside the SQL text.

import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';

const { Client } = pg;

const CHANNEL = 'node_example';     // LISTEN takes no parameters: this is a fixed identifier
const TASKS = 8;
const WORKERS = 4;
const NOTIFY_TIMEOUT_MS = 10_000;

const dsn = process.env.PG_BARRIER_DSN;
if (!dsn) {
  console.error('FAIL: PG_BARRIER_DSN is not set. Run this example through scripts/clients.sh, '
    + 'or set it yourself: PG_BARRIER_DSN=postgres://user@host:port/db node example.js');
  process.exit(2);
}

// The one check this example makes: `actual` must equal `expected` (deeply, for objects and
// arrays), or the run fails with a message that shows both.
function expectEqual(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

// Every connection the example opens, so that all of them are closed however it ends.
const clients = [];

async function connect(name) {
  const client = new Client({
    connectionString: dsn,
    application_name: `pg-barrier-node-example ${name}`,
    connectionTimeoutMillis: 10_000,
    statement_timeout: 10_000,     // a stuck statement fails the run instead of hanging it
  });
  // A connection that breaks outside a query emits 'error'; without a handler Node would crash
  // with a bare stack trace.
  client.on('error', (err) => console.error(`connection ${name}: ${err.message}`));
  clients.push(client);
  await client.connect();
  return client;
}

// Resolves with the first notification on `channel` whose payload names barrier `id` (others,
// such as those of another run on the same channel, are ignored); rejects after `ms`.
function waitForNotification(listener, channel, id, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      listener.off('notification', onNotification);
      reject(new Error(`no NOTIFY on channel "${channel}" for barrier ${id} within ${ms} ms`));
    }, ms);
    function onNotification(msg) {
      if (msg.channel !== channel) return;
      let payload;
      try {
        payload = JSON.parse(msg.payload);
      } catch (err) {
        clearTimeout(timer);
        listener.off('notification', onNotification);
        reject(new Error(`NOTIFY payload is not JSON: ${msg.payload}`));
        return;
      }
      if (payload.id !== id) return;
      clearTimeout(timer);
      listener.off('notification', onNotification);
      resolve(payload);
    }
    listener.on('notification', onNotification);
  });
}

// Fisher-Yates: the slots arrive in an order the barrier cannot predict.
function shuffle(items) {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

async function main() {
  const id = `node-example-${process.pid}-${Date.now()}`;
  const callback = { queue: 'reports', action: 'merge', requested_by: 'node example' };
  // The result each task reports: the one in slot i.
  const resultOf = (slot) => ({ slot, square: slot * slot });

  // 1. The listener: a connection of its own that only waits for notifications.
  const listener = await connect('listener');
  await listener.query(`LISTEN ${CHANNEL}`);
  // Listen before anything can complete the barrier: a notification is not queued for later.
  const notified = waitForNotification(listener, CHANNEL, id, NOTIFY_TIMEOUT_MS);
  notified.catch(() => {});   // awaited below; this only stops an early rejection being "unhandled"

  // 2. Enqueue the barrier. jsonb values are sent as JSON text.
  const workers = [];
  for (let w = 0; w < WORKERS; w++) workers.push(await connect(`worker ${w}`));
  const enqueued = await workers[0].query(
    'SELECT barrier_enqueue($1::text, $2::integer, callback => $3::jsonb, channel => $4::text) AS status',
    [id, TASKS, JSON.stringify(callback), CHANNEL],
  );
  expectEqual(enqueued.rows[0].status, 'pending', 'barrier_enqueue answer');
  console.log(`enqueued barrier ${id}: ${TASKS} tasks, channel ${CHANNEL}`);

  // 3. Deal the slots, shuffled, to the workers; one slot is redelivered at the end of the same
  //    worker's queue, so it is reported twice, the second time after the first.
  const order = shuffle([...Array(TASKS).keys()]);
  const queues = Array.from({ length: WORKERS }, () => []);
  order.forEach((slot, i) => queues[i % WORKERS].push(slot));
  const redelivered = order[Math.floor(Math.random() * TASKS)];
  queues.find((q) => q.includes(redelivered)).push(redelivered);

  const reports = [];   // { worker, slot, status, remaining, results, callback }
  await Promise.all(queues.map(async (queue, w) => {
    for (const slot of queue) {
      const { rows } = await workers[w].query(
        'SELECT status, remaining, results, callback FROM barrier_decr($1::text, $2::jsonb, slot => $3::integer)',
        [id, JSON.stringify(resultOf(slot)), slot],
      );
      expectEqual(rows.length, 1, `rows from barrier_decr for slot ${slot}`);
      reports.push({ worker: w, slot, ...rows[0] });
    }
  }));
  for (const r of reports) {   // in the order the answers came back
    console.log(`  worker ${r.worker} reported slot ${r.slot}: ${r.status}, remaining ${r.remaining}`);
  }

  // 4. Exactly one report completed the barrier, and it carries every result and the callback.
  const statuses = reports.map((r) => r.status);
  const count = (s) => statuses.filter((x) => x === s).length;
  expectEqual(reports.length, TASKS + 1, 'reports answered');
  expectEqual(count('complete'), 1, `reports answering complete (answers: ${statuses})`);
  expectEqual(count('duplicate'), 1, `reports answering duplicate (answers: ${statuses})`);
  expectEqual(count('pending'), TASKS - 1, `reports answering pending (answers: ${statuses})`);
  const duplicate = reports.find((r) => r.status === 'duplicate');
  expectEqual(duplicate.slot, redelivered, 'slot of the report answering duplicate');
  const complete = reports.find((r) => r.status === 'complete');
  expectEqual(complete.remaining, 0, 'remaining in the report answering complete');
  const expectedResults = [...Array(TASKS).keys()].map(resultOf);
  expectEqual(complete.results, expectedResults, 'results of the completion (every slot\'s, in slot order)');
  expectEqual(complete.callback, callback, 'callback of the completion (the one enqueued)');
  console.log(`slot ${complete.slot} completed the barrier with ${complete.results.length} results `
    + `in slot order; slot ${redelivered} was redelivered and answered duplicate`);

  // 5. The wake-up. The payload names the barrier, never its results.
  const payload = await notified;
  expectEqual(payload, { id, status: 'complete', round: 1 }, 'NOTIFY payload');
  console.log(`listener got NOTIFY on ${CHANNEL}: ${JSON.stringify(payload)}`);

  // 6. The stored state is the truth; then take the completion, once.
  const status = await listener.query(
    'SELECT status, expected, remaining FROM barrier_status($1::text)', [id],
  );
  expectEqual(status.rows.length, 1, 'rows from barrier_status');
  expectEqual(status.rows[0], { status: 'complete', expected: TASKS, remaining: 0 }, 'barrier_status');
  console.log(`barrier_status: ${JSON.stringify(status.rows[0])}`);

  const firstTake = await listener.query('SELECT results, callback FROM barrier_take($1::text)', [id]);
  expectEqual(firstTake.rows.length, 1, 'rows from the first barrier_take');
  expectEqual(firstTake.rows[0].results, expectedResults, 'barrier_take results');
  expectEqual(firstTake.rows[0].callback, callback, 'barrier_take callback');
  const secondTake = await listener.query('SELECT results, callback FROM barrier_take($1::text)', [id]);
  expectEqual(secondTake.rows.length, 0, 'rows from the second barrier_take');
  console.log('barrier_take: the first take returned the completion, the second returned nothing');
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  console.error(`FAIL: ${err.message}`);
  // Errors from the server carry a SQLSTATE and sometimes a detail and a hint.
  if (err.code) console.error(`  SQLSTATE ${err.code}`);
  if (err.detail) console.error(`  DETAIL: ${err.detail}`);
  if (err.hint) console.error(`  HINT: ${err.hint}`);
} finally {
  // end() both closes the connection and, for the listener, stops listening.
  await Promise.allSettled(clients.map((c) => c.end()));
}
if (failed) process.exit(1);
console.log(`OK: node example passed (${clients.length} connections opened and closed)`);
