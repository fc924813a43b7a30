"""The package's layout holds: wings as folders, each importing only the wings below it, no
import cycles, a small shared root, Dagster's private names in one module, and the environment
read in one module. Read from the source (ast), so nothing is imported to check it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "webtv_dagster"
# Lowest first: a module may import its own wing, the shared root and the wings before it.
WINGS = ["media", "backends", "spaces", "production", "playout", "audience", "stack", "lib", "defs"]
ON_TOP = {"webtv_dagster.cli", "webtv_dagster.definitions"}  # may import every wing
ROOT_MODULES_AT_MOST = 14


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The nodes under `if TYPE_CHECKING:`, which run for type checkers alone."""
    return {
        node
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
        for statement in block.body
        for node in ast.walk(statement)
    }


def imported_modules(name: str) -> set[str]:
    """The package's modules that `name` imports as it runs, at the top or in a function."""
    found = set()
    skipped = type_checking_only(TREES[name])
    for node in ast.walk(TREES[name]):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from package import module` imports the module.
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {module for module in found if module in MODULES}


def rank(name: str) -> int:
    """A module's place: 0 for the shared root, a wing's place from 1, the top last."""
    if name in ON_TOP:
        return len(WINGS) + 1
    parts = name.split(".")
    return WINGS.index(parts[1]) + 1 if len(parts) > 2 or parts[-1] in WINGS else 0


def test_every_folder_of_the_package_is_a_named_wing():
    folders = {path.parent.relative_to(PACKAGE).parts[:1] for path in PACKAGE.rglob("*.py")}
    assert {folder[0] for folder in folders if folder} == set(WINGS)


def test_no_module_imports_a_wing_above_its_own():
    upward = [
        f"{name} imports {imported}"
        for name in MODULES
        for imported in imported_modules(name)
        if rank(imported) > rank(name)
        and imported != "webtv_dagster"  # the package's own __init__ (warnings)
    ]
    assert upward == []


def test_there_are_no_import_cycles():
    graph = {name: imported_modules(name) - {name} for name in MODULES}
    cycles, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                cycles.append(path[path.index(imported) :] + [imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # A package imports its parent's __init__ when it is imported: not a cycle of our making.
    assert [cycle for cycle in cycles if cycle[-1] != "webtv_dagster"] == []


def test_the_shared_root_is_small():
    root = [path.name for path in PACKAGE.glob("*.py")]
    assert len(root) <= ROOT_MODULES_AT_MOST, sorted(root)


def test_only_the_history_module_imports_private_dagster_names():
    private = sorted(
        name
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom | ast.Import)
        for imported in ([node.module] if isinstance(node, ast.ImportFrom) else [])
        + [alias.name for alias in getattr(node, "names", []) if isinstance(node, ast.Import)]
        if imported and imported.startswith("dagster._")
    )
    assert set(private) == {"webtv_dagster.lib.history"}


def test_only_the_settings_module_reads_the_environment():
    readers = sorted(
        name
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if (isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"})
        or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and {a.name for a in node.names} & {"environ", "getenv", "environb"}
        )
    )
    assert set(readers) == {"webtv_dagster.settings"}
