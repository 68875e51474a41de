"""The package's shape: module-level imports inside pconv_hf form no cycle, and the modules that used to be
held in a circle by imports inside functions (model, inpainting, onnx) import each other at the top."""

import ast
from pathlib import Path

import pconv_hf

PACKAGE = Path(pconv_hf.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(module: str, node: ast.ImportFrom, is_package: bool) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    if not base.startswith("pconv_hf"):
        return []
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def top_level_imports() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        targets = set()
        for node in ast.parse(path.read_text()).body:  # module level only: not inside functions or classes
            if isinstance(node, ast.ImportFrom):
                targets.update(name for name in resolve(module, node, path.name == "__init__.py") if name in files)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in files)
        graph[module] = targets - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target.startswith(node + ".") or node == "pconv_hf":
                continue  # a package importing its own submodules is not a cycle
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if state.get(target) is None and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def test_module_level_imports_have_no_cycle():
    graph = top_level_imports()
    assert "pconv_hf.inpainting" in graph["pconv_hf.model"] and "pconv_hf.onnx" in graph["pconv_hf.model"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    # Training sits below the anomaly detector: it uses the defect painter from pconv_hf.defects, not anomaly/.
    assert not any(target.startswith("pconv_hf.anomaly") for target in graph["pconv_hf.training"])


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_network_module_holds_no_runtime_or_hub_helpers():
    source = (PACKAGE / "model.py").read_text()
    for name in ("def autocast_dtype", "def eval_mode", "def _cpu_flags", "MODEL_CARD_TEMPLATE =", "_weights_dtype"):
        assert name not in source
