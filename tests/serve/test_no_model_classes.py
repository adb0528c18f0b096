"""The service knows the served-state protocol of every model, never a model class: no module of
``memrec.serve`` imports a model class or a model's module, or names one."""
from __future__ import annotations

import ast
from pathlib import Path

import memrec.serve
from memrec.models import MODELS

SERVE = Path(memrec.serve.__file__).parent
CLASS_NAMES = {cls.__name__ for cls in MODELS.values()} | {cls.config_class.__name__ for cls in MODELS.values()}


def model_references(source: str) -> list[str]:
    """Imports of ``memrec.models.<module>`` and uses of a model class's name in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("memrec.models."):
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom) and node.module == "memrec.models":
            found += [f"from memrec.models import {a.name}" for a in node.names if a.name in CLASS_NAMES]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("memrec.models.")]
        elif isinstance(node, (ast.Name, ast.Attribute)) and (getattr(node, "id", None) or getattr(node, "attr", None)) in CLASS_NAMES:
            found.append(f"line {node.lineno}: {getattr(node, 'id', None) or node.attr}")
    return found


def test_the_check_sees_a_model_class():
    assert model_references("from memrec.models.ramrec import RAMRec\nisinstance(m, RAMRec)") == \
        ["from memrec.models.ramrec import ...", "line 2: RAMRec"]
    assert model_references("import memrec.models\nx = memrec.models.UR4RecMoE") == ["line 2: UR4RecMoE"]


def test_no_serve_module_imports_or_names_a_model_class():
    files = sorted(SERVE.glob("*.py"))
    assert len(files) >= 5
    offending = {f.name: refs for f in files if (refs := model_references(f.read_text()))}
    assert offending == {}, f"memrec.serve must go through the served-state protocol: {offending}"
