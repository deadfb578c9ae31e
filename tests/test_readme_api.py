"""The README's "Python API" code runs as written, on a tiny-random run in the folder it names."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

from ptmoe_core.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from ptmoe_core.trainer import train

README = Path(__file__).resolve().parents[1] / "README.md"


def api_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_api_runs(tiny_base, tmp_path, monkeypatch):
    blocks = api_blocks()
    assert blocks and "ptmoe_core.load(" in blocks[0]
    folder = re.search(r'ptmoe_core\.load\("([^"]+)"\)', blocks[0]).group(1)
    run_dir = Path(folder).parent  # the run the README's CLI example trains: OUTPUT_DIR/adapter
    rows = [{"id": str(i), "domain": "toy", "question": f"What is {i} plus 2?", "context": "",
             "answers": [str(i + 2)], "answer_type": "number", "split": "train", "ood": False} for i in range(8)]
    monkeypatch.chdir(tmp_path)
    train(RunConfig(name="readme", output_dir=str(run_dir), model=ModelConfig(name="tiny-random", device="cpu"),
                    method=MethodConfig(method="ptmoe", prompt_len=4, rank=3, n_experts=2),
                    data=DataConfig(train=["builtin:toy"], max_source_tokens=64, max_answer_tokens=4),
                    train=TrainConfig(steps=2, batch_size=2, warmup_steps=0)), base=tiny_base, data=(rows, {}))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks:
            exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    printed = out.getvalue()
    assert "| expert 0" in printed or "| expert 1" in printed  # a routed answer with its expert
    assert "expert 0:" in printed and "expert 1:" in printed  # one forced answer per expert
    assert "macro" in printed and "units" in printed  # the evaluation table
    exported = re.search(r'ptmoe_core\.save\(adapter, "([^"]+)"\)', blocks[-1]).group(1)
    assert (tmp_path / exported / "README.md").is_file()
    assert json.loads((tmp_path / exported / "ptmoe_config.json").read_text())["format"]["max_source_tokens"] == 64
