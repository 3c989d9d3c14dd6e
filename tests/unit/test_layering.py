"""The package's seams hold: imports flow one way between the folders, and SQL lives in the store.

Layers, lowest first (a folder imports its own layer and those below, never above):

    core (and the top package's data helpers)  <  detectors  <  retrain_trigger  <  dashboards
    <  streams  <  cli, deploy

``driftwarden/__main__.py`` (``python -m driftwarden``) is the CLI's door and sits with it.
SQL is written in ``core/storage/`` (the store, its schema and writer) and in the Grafana panels
(``dashboards/panels.py``, which are SQL for Grafana's data source, run against the real schema
in ``tests/integration/test_dashboards.py``) and nowhere else.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"core": 0, "pkg": 0, "detectors": 1, "retrain_trigger": 2, "dashboards": 3, "streams": 4, "cli": 5,
          "deploy": 5}
"""Folder -> layer (the folders of the installed package; ``pkg`` is ``driftwarden`` itself)."""
TOP = {"pkg/__main__.py": 5}
SQL = re.compile(r"\b(?:SELECT\s.+?\sFROM|INSERT\s+INTO|ALTER\s+TABLE|CREATE\s+TABLE|DROP\s+TABLE|OPTIMIZE\s+TABLE)\b",
                 re.IGNORECASE | re.DOTALL)
SQL_HOMES = ("core/storage/", "dashboards/panels.py")


def modules():
    for folder in LAYERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def folder_of(module: str) -> str | None:
    """The folder a ``driftwarden...`` module lives in (None: not one of the package's folders)."""
    parts = module.split(".")
    if parts[0] != "driftwarden":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) > 1 and parts[1] in ("bench", "tests"):
        return parts[1]
    return "pkg"


def imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_no_import_goes_up_a_layer_or_into_bench_or_tests():
    wrong = []
    for path, tree in modules():
        layer = TOP.get(path, LAYERS[path.split("/")[0]])
        for module in imports(tree):
            target = folder_of(module)
            if target is None:
                continue
            if target in ("bench", "tests") or LAYERS[target] > layer:
                wrong.append(f"{path} imports {module}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_layering_check_sees_an_upward_import():
    tree = ast.parse("from driftwarden.streams.replay import read_jsonl\nimport driftwarden.cli.main\nimport os")
    assert [folder_of(m) for m in imports(tree)] == ["streams", "cli", None]


def strings(tree: ast.AST):
    """Every string literal's text (an f-string's literal parts joined), docstrings left out."""
    skip = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    skip |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else " x " for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def test_no_sql_outside_the_store_and_the_grafana_panels():
    found = []
    for path, tree in modules():
        if path.startswith(SQL_HOMES):
            continue
        found += [f"{path}:{line}: {text[:80]!r}" for line, text in strings(tree) if SQL.search(text)]
    assert not found, "SQL outside core/storage/ (use a Store method):\n" + "\n".join(found)


def test_the_sql_check_sees_a_query_in_an_f_string():
    tree = ast.parse('db = "x"\nq = f"SELECT count() FROM {db}.events"\n"""A docstring: SELECT a FROM b."""')
    assert [SQL.search(text) is not None for _, text in strings(tree)] == [False, True]


def test_every_package_folder_is_listed_in_pyproject_so_a_wheel_carries_it():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in rel and not any(p.startswith(".") for p in rel):
                found.add(".".join((name, *rel)))
    assert found <= listed, f"folders missing from [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found <= {"driftwarden.data", "driftwarden.data.heads", "driftwarden.data.policy"}
