"""The layers keep their direction: api/ and web/ (HTTP) -> domain (auth, upwork, security)
-> db. Read from the source with the ast module: no import is executed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent / "src" / "upwork_assistant"
DOMAIN = ("auth", "upwork", "security", "db")
#: The composition root: the only code that knows every part.
ROOT_MODULES = ("app", "services", "cli")
HTTP_LIBRARIES = ("fastapi", "starlette", "uvicorn")
#: ASGI middleware kept beside the security policy it applies (headers, body size).
MIDDLEWARE = {"security.headers", "security.body", "security.redact"}


def modules() -> dict[str, set[str]]:
    """Each module of the package (dotted, without the package name) -> what it imports
    (dotted: our modules without the package name, others as written)."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join(parts)
        imports: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    module = node.module or ""
                    if module.startswith("upwork_assistant"):
                        module = module.removeprefix("upwork_assistant").lstrip(".")
                        imports.update(f"{module}.{a.name}".strip(".") for a in node.names)
                    else:
                        imports.add(module)
                    continue
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                if node.module:
                    imports.add(target)
                else:
                    imports.update(f"{target}.{a.name}".strip(".") for a in node.names)
        found[name] = imports
    return found


def package_of(module: str) -> str:
    return module.split(".")[0]


def test_domain_never_reaches_up() -> None:
    """Nothing in auth/, upwork/, security/ or db/ imports FastAPI, api/, web/, the
    sandbox or the composition root."""
    wrong = []
    for name, imports in modules().items():
        if package_of(name) not in DOMAIN:
            continue
        for imported in imports:
            top = imported.split(".")[0]
            if top in HTTP_LIBRARIES and name not in MIDDLEWARE:
                wrong.append(f"{name} imports {imported}")
            if top in ("api", "web", "sandbox", *ROOT_MODULES):
                wrong.append(f"{name} imports {imported}")
            if imported.split(".")[-1] in ("routes", "deps"):
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_the_sandbox_imports_nothing_of_the_app_but_config() -> None:
    wrong = [
        f"{name} imports {imported}"
        for name, imports in modules().items()
        if package_of(name) == "sandbox"
        for imported in imports
        if package_of(imported) in {*DOMAIN, "api", "web", *ROOT_MODULES}
    ]
    assert wrong == []


def test_no_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    ours = {package_of(n) for n in modules()}
    for name, imports in modules().items():
        source = package_of(name)
        for imported in imports:
            target = package_of(imported)
            if (
                target in ours
                and target != source
                and source not in ROOT_MODULES
                and target not in ROOT_MODULES
            ):
                graph.setdefault(source, set()).add(target)
    # db at the bottom, then the domain, then HTTP: every edge goes down.
    order = {
        "config": 0,
        "logs": 3,  # logging setup: uses the redaction of security/
        "db": 1,
        "security": 2,
        "upwork": 3,
        "auth": 4,
        "sandbox": 1,
        "api": 5,
        "web": 6,
        "__init__": 0,
    }
    upward = [
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if order.get(target, 0) >= order.get(source, 0)
    ]
    assert upward == [], graph


@pytest.mark.parametrize("package", ["api", "web"])
def test_http_layers_do_not_reach_into_route_modules_of_others(package: str) -> None:
    """web/ calls the same domain operations as api/, not api's route handlers."""
    wrong = [
        f"{name} imports {imported}"
        for name, imports in modules().items()
        if package_of(name) == package
        for imported in imports
        if ".routes" in imported and package_of(imported) not in (package,)
    ]
    assert wrong == []
