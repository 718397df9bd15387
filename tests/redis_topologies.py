"""Local Sentinel and Cluster set-ups for the tests: the classes the scale-out benchmark uses too."""

from bench.topologies import ClusterSet, SentinelSet, Server, cpu_seconds

__all__ = ["ClusterSet", "SentinelSet", "Server", "cpu_seconds"]
