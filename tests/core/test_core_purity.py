"""perdure.core stays deterministic: no clock, randomness, threads, asyncio or I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import perdure.core

CORE = Path(perdure.core.__file__).parent
FORBIDDEN_MODULES = {
    "asyncio", "concurrent", "multiprocessing", "os", "random", "secrets", "socket",
    "subprocess", "threading", "time", "perdure.store", "perdure.runtime", "perdure.client",
}  # fmt: skip
FORBIDDEN_NAMES = {"now", "utcnow", "today", "uuid1", "uuid4", "open", "time_ns", "perf_counter"}


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = []
        for module in modules:
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN_MODULES):
                found.append(f"{path.name}:{node.lineno} imports {module}")
        is_call = isinstance(node, ast.Call)
        if is_call and isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_NAMES:
            found.append(f"{path.name}:{node.lineno} calls .{node.func.attr}()")
        if is_call and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_NAMES:
            found.append(f"{path.name}:{node.lineno} calls {node.func.id}()")
    return found


def test_core_modules_import_and_call_nothing_nondeterministic():
    violations = [v for path in sorted(CORE.glob("*.py")) for v in _violations(path)]
    assert violations == []
