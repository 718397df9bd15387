"""An app with an every-second periodic entry, for the scheduler tests."""

from __future__ import annotations

from supervisor import App, fixed_delay
from tests.apps.pool_app import do_record

app = App(retry_delay=fixed_delay(0))
app.register("record", do_record)
app.periodic(None, "record", every="1s", name="tick")
