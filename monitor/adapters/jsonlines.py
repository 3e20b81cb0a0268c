"""``--emit-dicts``: one JSON line per VM, the legacy dict with foreign devices and
conflicts beside it. Keys are sorted so two runs of a fixture diff cleanly."""

from __future__ import annotations

import json
from typing import TextIO

from monitor.legacy.dicts import ConvertedVm


class JsonLinesAdapter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def handle(self, vm_id: str, converted: ConvertedVm) -> None:
        line = json.dumps(converted.as_json(), sort_keys=True, separators=(",", ":"))
        self.stream.write(line + "\n")
        self.stream.flush()
