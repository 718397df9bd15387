"""The private redis-server the tests start: the same class the benchmarks use.

It lives in ``bench/common.py`` because the peers' virtualenvs import it too (without this
package installed); a free loopback port, its own directory, killed by pid, never port 6379.
"""

from bench.common import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
