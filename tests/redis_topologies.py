"""Local Sentinel and Cluster set-ups for the tests: the classes the scale-out benchmark uses too."""

from bench.topologies import ClusterSet, SentinelSet, Server, redis_cpu

__all__ = ["ClusterSet", "SentinelSet", "Server", "redis_cpu"]
