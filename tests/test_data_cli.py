"""``python -m ptmoe_core data SPEC... --show N``: counts per split, then the first normalised rows."""

from __future__ import annotations

import json

from ptmoe_core.cli import main
from ptmoe_core.data import preview


def test_data_command_counts_and_rows(capsys, shared_data):
    squad = shared_data / "squad" / "squad-v2-sample.json"
    assert main(["data", "builtin:all?n=10&n_eval=5", f"squad:{squad}?split=test", "--show", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "builtin:all?n=10&n_eval=5"
    assert out[1].split() == ["train=40", "validation=20", "test=20", "(domains:", "builtin-arith,", "builtin-dates,",
                              "builtin-qa,", "builtin-units)"]
    rows = [json.loads(x) for x in out[2:4]]
    assert rows == preview("builtin:all?n=10&n_eval=5", 2)
    assert out[4] == f"squad:{squad}?split=test"
    assert out[5].split()[0] == "test=59"
    squad_rows = [json.loads(x) for x in out[6:8]]
    assert all(r["split"] == "test" and r["domain"] == "squad-v2" for r in squad_rows)
    assert all(len(r["context"]) <= 160 for r in squad_rows)  # long passages are shortened for display

