"""Start-up self-check: does the configured Redis accept our commands on our keys?

Some Redis problems are not outages but configuration: a wrong password, a database number the
server does not have, an ACL user whose key patterns do not cover our namespace or who may not run
scripts. Left alone they look like an outage forever ("unreachable, retrying") or crash-loop the
children. Checked once before the pool starts, they end the start with exit 78 and one line that
says what is missing. An unreachable server is not a configuration error (Redis may start after
us, as in a compose file): the check then passes and the pool waits for it with back-off.
"""

from __future__ import annotations

import redis
from redis.exceptions import NoPermissionError, RedisClusterException

from supervisor.adapters.redis.connection import connect, connect_settings, is_cluster
from supervisor.adapters.redis.keys import QueueKeys, queues_key, servers_key
from supervisor.config import RedisSettings

#: Reads the given keys and writes a short-lived probe key of each queue: the same kinds of
#: access our scripts need, under the same key patterns.
_PROBE = """
for i = 1, #KEYS do redis.call('EXISTS', KEYS[i]) end
for i = 1, #ARGV do
  redis.call('SET', ARGV[i], '1', 'PX', 1000)
  redis.call('DEL', ARGV[i])
end
return 1
"""


def configuration_problem(target: str | RedisSettings, shown: str, namespace: str, queues: list[str]) -> str | None:
    """One line naming what this Redis refuses us, or None when it accepts us (or is unreachable).

    ``target``: a URL, or the settings (Sentinel and Cluster included)."""
    try:
        if isinstance(target, str):
            client = connect(target, socket_timeout=2.0, client_name="supervisor-selfcheck")
        else:
            client = connect_settings(target, socket_timeout=2.0, client_name="supervisor-selfcheck")
    except (redis.ConnectionError, redis.TimeoutError, RedisClusterException):
        return None  # a cluster client reads the slot map at once: an outage, not a configuration
    try:
        return _probe(client, shown, namespace, queues)
    finally:
        client.close()


def _probe(client: redis.Redis, shown: str, namespace: str, queues: list[str]) -> str | None:
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        return (
            f"Redis at {shown} refused the credentials "
            f"(REDIS_USERNAME/REDIS_PASSWORD or the URL's user:password): {exc}"
        )
    except (redis.ConnectionError, redis.TimeoutError):
        return None  # an outage, not a configuration: the pool starts and waits for Redis
    except redis.ResponseError as exc:
        if "DB index" in str(exc):
            return f"Redis at {shown} has no such database (REDIS_DB or the URL's /N): {exc}"
        return f"Redis at {shown} refused a connection check (PING): {exc}"
    # One script call per slot on a cluster (a queue's keys; then the registry and servers keys);
    # one call over everything on a single server.
    groups: list[tuple[list[str], list[str]]] = []
    for queue in queues:
        k = QueueKeys.of(namespace, queue)
        groups.append(([k.pending, k.msg, k.owner, k.lease], [f"{namespace}:{{{queue}}}:selfcheck"]))
    groups += [([queues_key(namespace)], []), ([servers_key(namespace)], [])]
    if not is_cluster(client):
        groups = [([key for g in groups for key in g[0]], [p for g in groups for p in g[1]])]
    probes = [p for g in groups for p in g[1]]
    try:
        sha = client.script_load(_PROBE)
        for keys, writes in groups:
            client.evalsha(sha, len(keys), *keys, *writes)
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.hgetall(QueueKeys.of(namespace, queue).owner)
        pipe.smembers(queues_key(namespace))
        pipe.brpop(probes[:1], timeout=0.01)  # idle workers block on BRPOP; the probe key is empty
        pipe.execute()
    except NoPermissionError as exc:
        return (
            f"the Redis user at {shown} lacks a permission the workers need ({exc}); it needs the commands "
            f"EVALSHA, SCRIPT, BRPOP and reads/writes on keys matching '{namespace}:*'"
        )
    except (redis.ConnectionError, redis.TimeoutError):
        return None
    except redis.OutOfMemoryError:
        return None  # a full Redis is an outage: tasks wait until it has room again
    except redis.ResponseError as exc:
        return f"Redis at {shown} refused our commands: {exc}"
    return None
