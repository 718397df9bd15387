"""topology_app's handlers plus an every-second periodic entry: the periodic test on a cluster."""

from __future__ import annotations

from supervisor import App, fixed_delay
from tests.apps.topology_app import mark

app = App(retry_delay=fixed_delay(0))
app.register("mark", mark)
app.periodic(None, "mark", every="1s", name="tick")
