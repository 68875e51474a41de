"""The package's shape: module-level imports inside pconv_hf form no cycle, and the modules that used to be
held in a circle by imports inside functions (model, inpainting, onnx) import each other at the top; no function
over 150 lines; imports inside functions only for optional dependencies; only the console commands end the
program; the commands live in pconv_hf/cli/."""

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


def python_files() -> dict[str, Path]:
    """Every module of the package, and app.py."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    files["app"] = PACKAGE.parent / "app.py"
    return files


def functions(tree: ast.AST):
    return (node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def test_no_function_over_150_lines():
    long = {
        f"{module}.{function.name}": function.end_lineno - function.lineno + 1
        for module, path in python_files().items()
        for function in functions(ast.parse(path.read_text()))
        if function.end_lineno - function.lineno + 1 > 150
    }
    assert not long, long


# Imports placed inside a function, each for an optional dependency that is heavy or may be missing (never to dodge
# an import cycle): the top-level module imported -> why it waits.
LAZY_IMPORTS = {
    "onnx": "the onnx extra: only exporting and the browser page need it",
    "onnxruntime": "the onnx extra: only running an .onnx model needs it",
    "pconv_hf.data": "imports datasets (the training extra); pconv-evaluate needs it for Hub ids only",
    "pconv_hf.anomaly.fitting": "imports training (accelerate, datasets); pconv-anomaly score/threshold do not",
}


def imports_inside_functions(module: str, path: Path) -> list[str]:
    found = []
    for function in functions(ast.parse(path.read_text())):
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                found.append(node.module)
            elif isinstance(node, ast.ImportFrom):  # relative: "from .x import y" imports x, "from . import y" y
                names = resolve(module, node, path.name == "__init__.py")
                found += names[1:] if node.module is None else names[:1]
            elif isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
    return found


def test_imports_inside_functions_are_only_optional_dependencies():
    assert imports_inside_functions("pconv_hf.cli.anomaly", PACKAGE / "cli" / "anomaly.py") == [
        "pconv_hf.anomaly.fitting",
        "pconv_hf.anomaly.fitting",
    ]
    unexpected = {}
    for module, path in python_files().items():
        for imported in imports_inside_functions(module, path):
            allowed = imported in LAZY_IMPORTS or imported.split(".")[0] in LAZY_IMPORTS
            if not allowed:
                unexpected.setdefault(module, []).append(imported)
    assert not unexpected, f"imports inside functions (move them to the top, or list an optional one): {unexpected}"


def exits(tree: ast.Module) -> list[int]:
    """Lines that end the program (``raise SystemExit``, ``sys.exit``, ``exit``, ``quit``, ``os._exit``) outside an
    ``if __name__ == "__main__":`` block."""
    main_blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test)
    ]
    inside_main = {id(sub) for block in main_blocks for sub in ast.walk(block)}
    lines = []
    for node in ast.walk(tree):
        if id(node) in inside_main:
            continue
        if isinstance(node, ast.Raise) and node.exc is not None and "SystemExit" in ast.unparse(node.exc):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "exit", "quit", "os._exit"):
            lines.append(node.lineno)
    return lines


def test_library_code_raises_and_only_the_commands_exit():
    script = "import sys\ndef f():\n    sys.exit(1)\nif __name__ == '__main__':\n    sys.exit(f())"
    assert exits(ast.parse(script)) == [3]
    assert exits(ast.parse((PACKAGE / "cli" / "common.py").read_text()))  # fail(): the one place that exits
    library = {m: p for m, p in python_files().items() if m != "app" and not m.startswith("pconv_hf.cli")}
    exiting = {module: lines for module, path in library.items() if (lines := exits(ast.parse(path.read_text())))}
    assert not exiting, f"library code ending the program (raise an exception instead): {exiting}"


def test_console_commands_live_in_the_cli_package():
    section = (PACKAGE.parent / "pyproject.toml").read_text().split("[project.scripts]\n")[1].split("\n[")[0]
    scripts = dict(line.replace('"', "").split(" = ") for line in section.strip().splitlines())
    assert scripts == {
        "pconv-inpaint": "pconv_hf.cli.inpaint:main",
        "pconv-anomaly": "pconv_hf.cli.anomaly:main",
        "pconv-evaluate": "pconv_hf.cli.evaluate:main",
        "pconv-export": "pconv_hf.cli.export:main",
    }
    graph = top_level_imports()
    assert graph["pconv_hf.cli"] == set()  # the package imports no command: each loads only what it uses
    # The library never reaches up into the commands.
    upward = {
        module: sorted(t for t in targets if t.startswith("pconv_hf.cli"))
        for module, targets in graph.items()
        if not module.startswith("pconv_hf.cli")
    }
    assert not {module: targets for module, targets in upward.items() if targets}
