"""The import layering (core <- spec <- ft <- compare <- methods <- bench <- commands <- studio <- app).

Checked by `scripts/import_graph.py`, which reads imports with `ast`: nothing is imported, so this is fast.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_graph", module)
    spec.loader.exec_module(module)
    return module


ig = _load_import_graph()


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


PACKAGES = {
    "tasc/__init__.py": "",
    "tasc/core/__init__.py": "",
    "tasc/spec/__init__.py": "",
    "studio/__init__.py": "",
}


# --- the real tree -----------------------------------------------------------------------------


def test_real_tree_has_no_layering_violation():
    imports = ig.module_imports(ROOT)
    assert "tasc.core.errors" in imports and "app" in imports  # the scan found the tree
    problems = ig.violations(imports)
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_real_tree_has_no_import_cycle():
    imports = ig.module_imports(ROOT)
    loops = ig.cycles(imports)
    assert not loops, "import cycles:\n" + "\n".join(ig.describe_cycle(imports, c) for c in loops)


def test_the_scan_imports_nothing_it_reads():
    code = (
        "import runpy, sys; from pathlib import Path;"
        f"g = runpy.run_path({str(ROOT / 'scripts' / 'import_graph.py')!r});"
        f"g['module_imports'](Path({str(ROOT)!r}));"
        "print(sorted({'torch', 'transformers', 'gradio', 'tasc', 'studio'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the checker can fail ----------------------------------------------------------------------


def test_upward_import_is_reported(tmp_path):
    root = _write(tmp_path, {**PACKAGES, "tasc/core/a.py": "import os\n\nfrom tasc.spec.b import thing\n",
                             "tasc/spec/b.py": "thing = 1\n"})
    imports = ig.module_imports(root)
    assert imports["tasc.core.a"] == {"tasc.spec.b"}
    problems = ig.violations(imports)
    assert len(problems) == 1
    assert "tasc/core/a.py:3" in problems[0]
    assert "tasc.spec.b" in problems[0] and "higher layer spec" in problems[0]


def test_downward_and_same_layer_imports_are_fine(tmp_path):
    root = _write(tmp_path, {**PACKAGES, "tasc/core/a.py": "", "tasc/core/c.py": "from tasc.core import a\n",
                             "tasc/spec/b.py": "from tasc.core.a import x\nimport tasc.core.c\n",
                             "studio/s.py": "import gradio\nfrom tasc.spec import b\n",
                             "app.py": "import studio.s\nimport tasc.spec.b\n"})
    imports = ig.module_imports(root)
    assert imports["tasc.core.c"] == {"tasc.core.a"}
    assert imports["tasc.spec.b"] == {"tasc.core.a", "tasc.core.c"}
    assert imports["app"] == {"studio.s", "tasc.spec.b"}
    assert ig.violations(imports) == []
    assert ig.cycles(imports) == []


def test_tasc_importing_studio_or_gradio_is_reported(tmp_path):
    root = _write(tmp_path, {**PACKAGES, "tasc/x.py": "from studio.y import widget\n",
                             "tasc/core/ui.py": "def f():\n    import gradio as gr\n    return gr\n",
                             "studio/y.py": "widget = 1\n"})
    problems = ig.violations(ig.module_imports(root))
    text = "\n".join(problems)
    assert "tasc/x.py:1" in text and "studio.y" in text and "nothing under tasc/ may import studio" in text
    assert "tasc/core/ui.py:2 [lazy]" in text and "imports gradio" in text
    assert "tasc.x is in no layer" in text  # tasc/x.py is not under a layer folder


def test_torch_in_ngram_index_is_reported(tmp_path):
    root = _write(tmp_path, {**PACKAGES,
                             "tasc/spec/ngram_index.py": "import numpy\nfrom transformers import AutoTokenizer\n",
                             "tasc/spec/decode.py": "import torch\n"})
    problems = ig.violations(ig.module_imports(root))
    assert len(problems) == 1  # torch in decode.py is fine
    assert "tasc/spec/ngram_index.py:2" in problems[0] and "transformers" in problems[0]


def test_cycle_is_reported(tmp_path):
    root = _write(tmp_path, {**PACKAGES, "tasc/core/a.py": "from tasc.core import b\n",
                             "tasc/core/b.py": "def f():\n    from tasc.core.a import g\n",
                             "tasc/core/c.py": "import tasc.core.a\n"})
    imports = ig.module_imports(root)
    assert ig.violations(imports) == []
    assert ig.cycles(imports) == [["tasc.core.a", "tasc.core.b"]]
    sentence = ig.describe_cycle(imports, ["tasc.core.a", "tasc.core.b"])
    assert "tasc/core/a.py:1" in sentence and "tasc/core/b.py:2 [lazy]" in sentence


def test_every_module_of_a_component_lies_on_a_reported_cycle():
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"b"}, "d": {"a"}, "e": {"e"}}
    loops = ig.cycles(graph)
    assert {m for loop in loops for m in loop} == {"a", "b", "c"}
    for loop in loops:  # each is a real cycle: every hop is an edge
        assert all(b in graph[a] for a, b in zip(loop, loop[1:] + loop[:1], strict=False))


def test_relative_and_type_checking_imports_are_read(tmp_path):
    root = _write(tmp_path, {**PACKAGES, "tasc/spec/b.py": "",
                             "tasc/core/a.py": "from typing import TYPE_CHECKING\n\n"
                                               "if TYPE_CHECKING:\n    from ..spec import b\n",
                             "tasc/core/c.py": "from . import a\nfrom .a import x\n",
                             "tasc/core/__init__.py": "from .c import y\n"})
    imports = ig.module_imports(root)
    assert imports["tasc.core.a"] == {"tasc.spec.b"}
    assert imports["tasc.core.c"] == {"tasc.core.a"}
    assert imports["tasc.core"] == {"tasc.core.c"}
    problems = ig.violations(imports)
    assert len(problems) == 1 and "tasc/core/a.py:4 [TYPE_CHECKING]" in problems[0]


def test_missing_methods_module_still_counts(tmp_path):
    root = _write(tmp_path, {**PACKAGES, "tasc/core/a.py": "from tasc import methods\n",
                             "tasc/spec/s.py": "import importlib\nm = importlib.import_module('tasc.methods')\n"})
    imports = ig.module_imports(root)
    assert imports["tasc.core.a"] == {"tasc.methods"} == imports["tasc.spec.s"]
    assert len(ig.violations(imports)) == 2


@pytest.mark.parametrize(
    "module, layer",
    [
        ("tasc", "core"), ("tasc.core.corpus", "core"), ("tasc.spec", "spec"), ("tasc.ft.vocab", "ft"),
        ("tasc.compare.hybrid", "compare"), ("tasc.methods", "methods"), ("tasc.bench.bench", "bench"),
        ("tasc.cli", "commands"), ("tasc.__main__", "commands"), ("tasc.commands.mine", "commands"),
        ("studio.jobs", "studio"), ("app", "app"), ("tasc.misc", "unassigned"), ("torch", "external"),
    ],
)
def test_layer_of(module, layer):
    assert ig.layer_of(module) == layer


def test_mermaid_and_script(tmp_path, capsys):
    root = _write(tmp_path, {**PACKAGES, "tasc/core/a.py": "", "tasc/spec/b.py": "import tasc.core.a\n",
                             "studio/s.py": "from tasc.core import a\nfrom tasc.spec import b\n"})
    picture = ig.mermaid(ig.module_imports(root))
    assert picture.startswith("flowchart")
    assert "studio -->|1| core" in picture and "spec -->|1| core" in picture
    out = tmp_path / "README.md"
    out.write_text(f"# x\n{ig.README_BEGIN}\nold\n{ig.README_END}\nrest\n")
    assert ig.main(["--root", str(root), "--readme", str(out)]) == 0
    assert out.read_text() == f"# x\n{ig.readme_diagram(ig.module_imports(root))}\nrest\n"
    _write(root, {"tasc/core/bad.py": "import tasc.spec.b\n"})
    assert ig.main(["--root", str(root)]) == 1
    assert "tasc/core/bad.py:1" in capsys.readouterr().out


def test_readme_picture_is_todays_imports():
    """The README's layer diagram is the one the tree draws now (`scripts/import_graph.py --readme README.md`)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ig.with_diagram(readme, ig.module_imports(ROOT)) == readme, "run: python scripts/import_graph.py --readme README.md"
