"""Adapters: the ports of :mod:`supervisor.core.ports` implemented over real infrastructure."""
