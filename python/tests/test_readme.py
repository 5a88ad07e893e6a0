"""The example of python/README.md runs as shown (with unique segment names)."""

import re
import subprocess
import sys
from pathlib import Path

from conftest import PREFIX, leftovers

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(tmp_path):
    text = README.read_text()
    example = re.search(r"## Example\s+```python\n(.*?)```", text, re.S).group(1)
    assert len(example.strip().splitlines()) <= 25
    for n in ("frames", "seen", "done"):
        example = example.replace(f'"{n}"', f'"{PREFIX}readme-{n}"')
    script = tmp_path / "example.py"
    script.write_text(example)
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[0, 1, 2, 3] [0. 1. 2. 3.]"
    assert not [n for n in leftovers() if "readme" in n]
