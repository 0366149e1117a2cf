"""The apps form layers: no two of them import each other, directly or round a circle.

Every runtime module counts, function-level imports included; tests, migrations, management
commands and bench modules are left aside (they may reach across layers to set things up or
measure them). The project package `facelabel` sits apart: its URL configuration, settings and
WSGI entry are above every app, and its shared helpers (claims, rows, errors, celery) below them,
so those helpers import no app at all.
"""

import ast
from collections import defaultdict
from pathlib import Path

from django.apps import apps
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
ABOVE_THE_APPS = {"urls", "api_urls", "api_v1_urls", "settings", "wsgi", "asgi"}


def local_apps() -> set[str]:
    return {config.name for config in apps.get_app_configs() if Path(config.path).parent == ROOT}


def runtime_modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if {"tests", "migrations", "management"} & set(parts) or "bench" in path.stem:
            continue
        yield path


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def app_imports() -> dict[str, dict[str, set[str]]]:
    """app -> imported app -> the modules that import it."""
    names = local_apps()
    graph: dict[str, dict[str, set[str]]] = {app: defaultdict(set) for app in names}
    for app in names:
        for path in runtime_modules(app):
            for other in imported_packages(path) & names - {app}:
                graph[app][other].add(str(path.relative_to(ROOT)))
    return graph


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Every app that reaches itself again, with the path it takes."""
    found = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            app, path = stack.pop()
            for other in sorted(graph[app]):
                if other == start:
                    found.append([*path, start])
                elif other not in seen:
                    seen.add(other)
                    stack.append((other, [*path, other]))
    return found


def test_no_two_apps_import_each_other_round_a_circle():
    graph = app_imports()
    assert {"projects", "inference", "audit", "webhooks", "training"} <= set(graph)
    circles = cycles(graph)
    details = [
        " -> ".join(circle) + f" ({', '.join(sorted(graph[circle[0]][circle[1]]))} ...)" for circle in circles
    ]
    assert not circles, "import circles between apps:\n" + "\n".join(details)


def test_the_app_that_owns_labels_imports_no_app_above_it():
    assert set(app_imports()["projects"]) <= {"accounts"}


def test_inference_imports_neither_audits_nor_webhooks_nor_project_writes():
    modules = set()
    for path in runtime_modules("inference"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = {f"{node.module}.{alias.name}" for alias in node.names}
                modules |= {node.module, *names}
            elif isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
    refused = ("audit", "webhooks", "projects.services", "projects.tasks", "projects.exports")
    assert not {m for m in modules if m.split(".")[0] in refused[:2] or m.startswith(refused[2:])}


def test_the_project_packages_shared_helpers_import_no_app():
    names = local_apps()
    for path in runtime_modules("facelabel"):
        if path.stem in ABOVE_THE_APPS:
            continue
        assert not imported_packages(path) & names, f"{path.name} imports an app"


def test_the_circle_finder_finds_a_circle():
    assert cycles({"a": {"b": {"a.py"}}, "b": {"c": {"b.py"}}, "c": {"a": {"c.py"}}})
    assert not cycles({"a": {"b": {"a.py"}}, "b": {}, "c": {"a": {"c.py"}}})
