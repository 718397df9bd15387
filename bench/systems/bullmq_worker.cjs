// BullMQ's Node.js workers for the benchmark: the same three task bodies as every system (see
// bench/systems/base.py). One process; BENCH_CONCURRENCY jobs at once (BullMQ's `concurrency`).
// bullmq (and its ioredis) come from bench/results/node/node_modules, installed by bench/venvs.py
// and found through NODE_PATH.
'use strict';
const { Worker } = require('bullmq');
const IORedis = require('ioredis');

const url = process.env.BENCH_REDIS_URL;
const concurrency = parseInt(process.env.BENCH_CONCURRENCY || '100', 10);
const client = new IORedis(url);

const bodies = {
  noop: async () => { await client.incr('bench:count'); },
  sleep: async () => {
    await new Promise((resolve) => setTimeout(resolve, 10));
    await client.incr('bench:count');
  },
  pickup: async (job) => { await client.rpush('bench:pickup', String(Date.now() / 1000 - job.data.t)); },
};

const worker = new Worker('bench', async (job) => bodies[job.name](job), {
  connection: new IORedis(url, { maxRetriesPerRequest: null }),
  concurrency,
});
worker.on('error', (err) => console.error('worker error', err));

let closing = false;
const stop = async () => {
  if (closing) return;
  closing = true;
  await worker.close();
  await client.quit();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
