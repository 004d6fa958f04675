"""The import direction of STYLE.md: bottom layer <- steps <- pipeline <- daemon/cli."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "monitor"
BOTTOM = {
    "errors", "domain", "units", "tokens", "query", "schedule", "presearch", "nlp", "crash",
    "languages", "forms", "rarity",
    "metrics", "netguard",
}  # fmt: skip
STEPS = {"config", "sources", "match", "store", "sinks", "deliver", "stories"}
PIPELINE = {"pipeline", "wiring", "chores"}  # the order of the flow, and its assembly
TOP = {"daemon", "cli", "backtest", "http", "reload", "logs", "web"}


def layer_of(module: str) -> str:
    head = module.split(".")[0]
    if head in BOTTOM or head == "__init__":
        return "bottom"
    if head in STEPS:
        return "step"
    if head in PIPELINE:
        return "pipeline"
    assert head in TOP, f"module {module} has no layer: add it to tests/test_layers.py"
    return "top"


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("monitor."):
            found.add(node.module.removeprefix("monitor."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("monitor.") for a in node.names
                         if a.name.startswith("monitor."))  # fmt: skip
    return found


def test_imports_point_downwards() -> None:
    """Bottom imports only bottom; a step imports bottom (and itself, and the store/sinks it
    drives); nothing imports the pipeline except the top; nothing imports the top."""
    allowed = {
        "bottom": {"bottom"},
        "step": {"bottom", "step"},
        "pipeline": {"bottom", "step", "pipeline"},
        "top": {"bottom", "step", "pipeline", "top"},
    }
    # The outbox worker drives sinks through the store: the one step-to-step edge we allow.
    step_edges = {("deliver", "store"), ("deliver", "sinks")}
    bad = []
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        mine = layer_of(module)
        for imported in imports_of(path):
            theirs = layer_of(imported)
            head, other = module.split(".")[0], imported.split(".")[0]
            if theirs not in allowed[mine]:
                bad.append(f"{module} ({mine}) imports {imported} ({theirs})")
            elif mine == theirs == "step" and head != other and (head, other) not in step_edges:
                bad.append(f"step {module} imports another step {imported}")
    assert not bad, "\n".join(bad)
