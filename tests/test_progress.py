"""The progress line: rows done, rows/s and ETA from the planned units, read from unit receipts."""

from __future__ import annotations

import io
import time

from beamscore.progress import Progress, RowCounter, format_line, receipts_lister
from beamscore.transforms.batch import UnitResult
from beamscore.transforms.receipts import write_receipt


def test_format_line():
    assert format_line(1200, 5000, 3, 10, 3.0) == "1,200 / 5,000 rows (24%), 3 / 10 units, 400 rows/s, ETA 0:00:10"
    assert format_line(0, 5000, 0, 10, 0.0).endswith("0 rows/s, ETA ?")
    assert format_line(300, 0, 2, 4, 2.0) == "300 rows, 2 / 4 units, 150 rows/s, ETA 0:00:02"


def test_progress_reads_receipts_and_ticks(tmp_path):
    lister = receipts_lister(str(tmp_path))
    assert lister() == set()
    write_receipt(str(tmp_path), UnitResult(unit="part-00000-00001", input="in", rows_in=40, rows_out=40))
    assert lister() == {"part-00000-00001"}
    stream = io.StringIO()
    units = {"part-00000-00000": 60, "part-00000-00001": 40}
    with Progress(units, lister, stream, interval=0.01) as progress:
        deadline = time.monotonic() + 5
        while progress.lines < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and " progress: 40 / 100 rows (40%), 1 / 2 units" in lines[0]
    assert lines[0].endswith("Z progress: " + lines[0].split("Z progress: ", 1)[1])  # a UTC timestamp first


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_batches_move_the_line_between_units_and_a_terminal_redraws_it(tmp_path):
    """Rows reported batch by batch (the workers' progress file) count before their unit is
    committed, never past the plan; on a terminal the line is redrawn in place."""
    path = tmp_path / "progress.txt"
    path.write_text("")
    counter = RowCounter(str(path))
    assert counter() == 0
    with open(path, "a") as f:
        f.write("10\n25\n7")  # a line still being written is not counted yet
    assert counter() == 35
    with open(path, "a") as f:
        f.write("\n")
    assert counter() == 42
    stream = Terminal()
    progress = Progress({"part-00000-00000": 60, "part-00000-00001": 40}, set, stream, rows=counter)
    progress._start = time.monotonic() - 1
    assert progress.tick().startswith("42 / 100 rows (42%), 0 / 2 units")
    with open(path, "a") as f:
        f.write("90\n")  # a retried bundle may report rows twice: the line stops at the plan
    assert progress.tick().startswith("100 / 100 rows (100%)")
    assert stream.getvalue().startswith("\r42 / 100 rows") and "\n" not in stream.getvalue()
    counter.remove()
    assert not path.exists() and counter() == 132
