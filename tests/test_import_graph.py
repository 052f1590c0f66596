"""The import graph between files has no cycles, and tasks named instead of imported exist.

import-linter checks the direction between apps; this checks every file, function-level imports
included (grimp sees them): two files that import each other, however indirectly, can be read,
tested and changed only together. Services that hand work to their app's tasks name them
("app.tasks.function", see `core.enqueue`), since the tasks import the services; the second
test keeps those names true.
"""

import ast
import re
import tomllib
from pathlib import Path

import grimp
from celery import current_app

from core.enqueue import task_named

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
TASK_NAME = re.compile(r"^(?:[a-z_]+\.)+tasks\.[a-z_]+$")


def file_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of the project's modules: the files of each import one
    another, directly or through the others of the group."""
    seen: set[str] = set()
    cycles = []
    for module in sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES):
        if module in seen:
            continue
        group = graph.find_upstream_modules(module) & graph.find_downstream_modules(module)
        if group:
            group.add(module)
            seen |= group
            cycles.append(sorted(group))
    return cycles


def describe(graph: grimp.ImportGraph, group: list[str]) -> str:
    members = set(group)
    edges = []
    for importer in group:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                edges.append(f"    {importer}:{detail['line_number']}  {detail['line_contents']}")
    return " <-> ".join(group) + "\n" + "\n".join(edges)


def test_no_import_cycles_between_files() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = file_cycles(graph)
    assert not cycles, "files that import one another:\n" + "\n".join(describe(graph, group) for group in cycles)


def test_tasks_named_in_code_are_registered_tasks() -> None:
    names: dict[str, str] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and TASK_NAME.match(node.value):
                    names.setdefault(node.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    # The names the services enqueue by, and the beat schedules' tasks, at least.
    assert {"predictions.tasks.rescore_customer", "playbooks.tasks.run_playbook_executions"} <= set(names)
    unknown = {}
    for name, where in sorted(names.items()):
        try:
            task_named(name)
        except (KeyError, ImportError, AttributeError):
            unknown[name] = where
    assert not unknown, f"no task registered under these names: {unknown}"
    assert all(name in current_app.tasks for name in names)
