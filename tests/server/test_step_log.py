"""SPECGATE_STEP_LOG: one header per file, however often the engine starts."""

import csv

from server.scheduler import STEP_LOG_FIELDS, open_step_log


def test_an_engine_restart_appends_under_the_existing_header(tmp_path):
    path = tmp_path / "steps.csv"
    first = open_step_log(str(path))
    first.writerow(["row-1"])
    second = open_step_log(str(path))  # the engine started again
    second.writerow(["row-2"])
    rows = list(csv.reader(path.open(newline="")))
    assert rows == [list(STEP_LOG_FIELDS), ["row-1"], ["row-2"]]
