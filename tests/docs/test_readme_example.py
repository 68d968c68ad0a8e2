"""The README's complete example runs as written (on a temporary SQLite file)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_complete_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text(encoding="utf-8")
    section = text.split("## A complete example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "sqlite:///shop.db" in code
    script = tmp_path / "shop.py"
    script.write_text(code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the example's store is a relative path: keep it here
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "ch_7" in out and "packed a" in out and "packed b" in out
