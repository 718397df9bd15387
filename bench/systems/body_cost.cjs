// What the drain's task body costs alone in Node.js: `INCR bench:count` N times in a row with
// ioredis, no framework (the Node.js twin of bench/body_cost.py). Prints {"cpu_s": ...}.
'use strict';
const IORedis = require('ioredis');

async function main() {
  const n = parseInt(process.argv[2], 10);
  const client = new IORedis(process.env.BENCH_REDIS_URL);
  await client.ping();
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    await client.incr('bench:body');
  }
  const used = process.cpuUsage(t0);
  await client.quit();
  console.log(JSON.stringify({ cpu_s: (used.user + used.system) / 1e6, n }));
}

main().catch((err) => { console.error(err); process.exit(1); });
