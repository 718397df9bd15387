"""The process layer: the parent (arbiter) that forks, watches, restarts and stops the children.

Nothing here knows what a task does. The parent runs no task code; it learns what each child is
doing from the child's health pipe and acts on processes (signals, reaping, restarts) and, through
the broker port, on the tasks a dead child left behind.
"""
