"""Every host's job ticks in a thread of its own and prints its summary line when it ends
(``monitor run``; docs/worker.md, "The summary line"): two hosts that finish together
must still print two whole lines, never one line run into the other."""

from __future__ import annotations

import threading

from monitor.cli.run import summary_printer
from monitor.tick.summary import TickSummary


class HeldStream:
    """A stream that holds its first writer inside ``write`` until the test lets it go."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.first_inside = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.chunks.append(text)
        if len(self.chunks) == 1:
            self.first_inside.set()
            assert self.release.wait(10)
        return len(text)

    def flush(self) -> None:
        pass


def test_two_hosts_printing_at_once_print_two_whole_lines():
    stream = HeldStream()
    show = summary_printer(stream)
    first, second = TickSummary(host="host-a"), TickSummary(host="host-b")
    a = threading.Thread(target=show, args=(first,))
    a.start()
    assert stream.first_inside.wait(10)  # host-a is in the middle of its line
    b = threading.Thread(target=show, args=(second,))
    b.start()
    # host-b either waits for host-a's line to end, or (the bug) writes into it: give it
    # the time to do the latter, then let host-a finish.
    b.join(0.5)
    stream.release.set()
    a.join(10)
    b.join(10)
    assert "".join(stream.chunks) == first.line() + "\n" + second.line() + "\n"
    assert all(chunk.endswith("\n") for chunk in stream.chunks)
