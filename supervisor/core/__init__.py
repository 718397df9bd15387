"""The core: tasks, queue order, retry policy and the outcome of a run, without any I/O.

Nothing in this package talks to Redis, forks or reads the clock directly: the broker and the
clock are ports (see :mod:`supervisor.core.ports`), so every rule here can be read and tested alone.
"""
