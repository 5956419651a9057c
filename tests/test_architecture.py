"""The house rules: rooms that use only the rooms below them, stage deps that follow the imports,
paths said once, params tracked key by key."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stages"


def module_file(root: Path, module: str) -> Path | None:
    """The file of a `stages.…` module under `root` (a module or a package's __init__), None if absent."""
    base = Path(root, *module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """The `stages.…` modules a file imports, anywhere in it (imports inside functions too)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from package import module`
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def import_closure(root: Path, module: str) -> set[Path]:
    """Every project file `module` runs, relative to `root`: itself and what it imports, transitively
    (package __init__ files that hold nothing but a docstring left out)."""
    seen: set[str] = set()
    files: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        path = module_file(root, name)
        if path is None:
            continue  # `from package import NAME` where NAME is not a module
        if not _only_a_docstring(path):
            files.add(path.relative_to(root))
        pending.extend(imported_modules(path, name))
    return files


def _only_a_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Every module of the package under `root` and the package modules it imports (imports inside
    functions too; `from package import NAME` counted as importing the package when NAME is not a module)."""
    modules = {".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
               for path in (root / PACKAGE).rglob("*.py")}
    graph = {}
    for module, path in modules.items():
        imported = {name if name in modules else name.rpartition(".")[0] for name in imported_modules(path, module)}
        graph[module] = {name for name in imported if name in modules and name != module}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle of imports for each group of modules that import each other (a strongly connected
    component), as the modules in order with the first repeated at the end; empty when there is none."""
    circles = []
    for group in _strong_components(graph):
        if len(group) > 1:
            circles.append(_circle_within(graph, group))
    return circles


def _strong_components(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the groups of modules each reachable from every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for name in sorted(graph[module]):
            if name not in index:
                visit(name)
                low[module] = min(low[module], low[name])
            elif name in stack:
                low[module] = min(low[module], index[name])
        if low[module] == index[module]:
            group = set()
            while not group or member != module:
                member = stack.pop()
                group.add(member)
            groups.append(group)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return groups


def _circle_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest circle through the group's first module (breadth first, staying inside the group)."""
    start = min(group)
    came_from = {start: None}
    pending = [start]
    while pending:
        module = pending.pop(0)
        for name in sorted(graph[module] & group):
            if name == start:
                path = [module]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if name not in came_from:
                came_from[name] = module
                pending.append(name)
    raise AssertionError(f"no circle within {sorted(group)}")


def pipeline_stages() -> list:
    return list(Repo(str(ROOT)).index.stages)


def stage_module(stage) -> str:
    match = re.match(r"python -m (stages\.\w+)", stage.cmd)
    assert match, f"{stage.addressing}: its command should run a stage module: {stage.cmd}"
    return match.group(1)


def code_deps(stage) -> list[str]:
    return [dep.def_path for dep in stage.deps if dep.def_path.startswith(f"{PACKAGE}/")]


def covers(dep: str, path: Path) -> bool:
    return path.as_posix() == dep or path.as_posix().startswith(dep.rstrip("/") + "/")


def test_the_closure_follows_imports_inside_functions(tmp_path):
    package = tmp_path / "stages"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "lib" / "__init__.py").write_text("")
    (package / "lib" / "a.py").write_text("def f():\n    from stages.lib import b\n")
    (package / "lib" / "b.py").write_text("from .c import X\n")
    (package / "lib" / "c.py").write_text("X = 1\n")
    (package / "lib" / "unused.py").write_text("Y = 2\n")
    assert import_closure(tmp_path, "stages.lib.a") == {Path("stages/lib/a.py"), Path("stages/lib/b.py"),
                                                        Path("stages/lib/c.py")}


def test_the_import_graph_has_no_circle():
    """No module imports, however indirectly, a module that imports it back, imports inside functions
    included: an import moved into a function hides a circle, it does not remove it."""
    circles = import_circles(import_graph(ROOT))
    assert not circles, "circles of imports:\n" + "\n".join(" -> ".join(circle) for circle in circles)


def test_the_circle_test_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "stages"
    (package / "lib").mkdir(parents=True)
    for name in ("__init__.py", "lib/__init__.py"):
        (package / name).write_text("")
    (package / "lib" / "a.py").write_text("from stages.lib.b import B\n")
    (package / "lib" / "b.py").write_text("B = 1\ndef f():\n    from stages.lib import c\n")
    (package / "lib" / "c.py").write_text("from . import a\n")
    assert import_circles(import_graph(tmp_path)) == [["stages.lib.a", "stages.lib.b", "stages.lib.c", "stages.lib.a"]]
    (package / "lib" / "c.py").write_text("import stages.lib\n")
    assert import_circles(import_graph(tmp_path)) == []


def test_every_stage_depends_on_the_code_it_runs_and_on_nothing_it_never_imports():
    """Editing any file a stage imports re-runs it (no stale result); each dep (a file, or a room's folder
    where the stage runs most of that room) holds code the stage imports."""
    problems = []
    for stage in pipeline_stages():
        closure = import_closure(ROOT, stage_module(stage))
        deps = code_deps(stage)
        missing = sorted(p.as_posix() for p in closure if not any(covers(dep, p) for dep in deps))
        unused = [dep for dep in deps if not any(covers(dep, p) for p in closure)]
        if missing:
            problems.append(f"{stage.addressing}: dvc.yaml deps miss {', '.join(missing)}")
        if unused:
            problems.append(f"{stage.addressing}: dvc.yaml deps list code it never imports: {', '.join(unused)}")
    assert not problems, "\n".join(problems)


def test_stages_read_params_key_by_key_from_the_resolved_file():
    """Only the `params` stage reads params.yaml whole; every other stage lists the keys it reads from
    the resolved file, so editing a profile that is not in use re-runs nothing."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    resolved = raw["paths"]["params"]
    for stage in pipeline_stages():
        files = {dep.def_path: dep for dep in stage.deps if type(dep).__name__ == "ParamsDependency"}
        if stage.addressing == "params":
            assert set(files) == {"params.yaml"}
            continue
        assert set(files) <= {resolved}, f"{stage.addressing} tracks params of {set(files)}"
        keys = set(files[resolved].params) if files else set()
        assert not keys & {"profile", "profiles", "paths"}, f"{stage.addressing}: {keys & {'profiles', 'paths'}}"


def test_every_path_is_said_once():
    """dvc.yaml takes every data path from params.yaml's `paths`; no stage or library module writes one."""
    text = (ROOT / "dvc.yaml").read_text()
    literal = re.findall(r"(?<![\w{./])(?:data|models|reports)/[\w./-]*", text)
    assert not literal, f"dvc.yaml spells paths that belong in params.yaml's `paths`: {literal}"
    pattern = re.compile(r"""["'](?:(?:data|models|reports)/|downloads\.lock\.yaml["'])""")
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in sorted((ROOT / PACKAGE).rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line) and not line.lstrip().startswith("#")]
    assert not offenders, "paths written in code instead of params.paths:\n" + "\n".join(offenders)


def test_the_rooms_and_stages_keep_their_import_contracts():
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports; "
                           "import sys; sys.exit(lint_imports())"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


@pytest.mark.parametrize("offence", [
    ("stages/lib/core/labels.py", "from stages.lib.reporting import markdown  # noqa\n"),   # a room looks up
    ("stages/train.py", "from stages import evaluate  # noqa\n"),                           # a stage imports a stage
])
def test_the_contracts_catch_a_broken_rule(tmp_path, offence):
    shutil.copytree(ROOT / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target, line = offence
    (tmp_path / target).write_text(line + (tmp_path / target).read_text())
    done = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); "
                           "from importlinter.cli import lint_imports; sys.exit(lint_imports())"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0 and "BROKEN" in done.stdout


def test_tests_mirror_the_rooms():
    """tests/<room>/test_<module>[_<aspect>].py for a module of stages/lib/<room>; tests/stages/ for the
    stage CLIs, tests/e2e/ for whole pipeline runs."""
    rooms = {path.name for path in (ROOT / PACKAGE / "lib").iterdir() if (path / "__init__.py").exists()}
    stage_modules = {path.stem for path in (ROOT / PACKAGE).glob("*.py")} - {"__init__"}
    problems = []
    for test in sorted((ROOT / "tests").glob("*/test_*.py")):
        folder, name = test.parent.name, test.stem.removeprefix("test_")
        if folder == "e2e":
            continue
        modules = stage_modules if folder == "stages" else (   # the room's own name: its package (__init__.py)
            {p.stem for p in (ROOT / PACKAGE / "lib" / folder).glob("*.py")} | {folder} if folder in rooms else None)
        if modules is None:
            problems.append(f"{test.relative_to(ROOT)}: tests/{folder}/ is not a room of stages/lib")
        elif not any(name == m or name.startswith(f"{m}_") for m in modules | {"stage"}):
            problems.append(f"{test.relative_to(ROOT)}: names no module of {folder}")
    assert not problems, "\n".join(problems)


def test_every_library_module_has_its_own_test_file():
    """stages/lib/<room>/<module>.py is tested in tests/<room>/test_<module>.py (or test_<module>_<aspect>.py)."""
    untested = []
    for module in sorted((ROOT / PACKAGE / "lib").glob("*/*.py")):
        if module.stem == "__init__":
            continue
        tests = ROOT / "tests" / module.parent.name
        if not [t for t in tests.glob(f"test_{module.stem}*.py")
                if t.stem == f"test_{module.stem}" or t.stem.startswith(f"test_{module.stem}_")]:
            untested.append(str(module.relative_to(ROOT)))
    assert not untested, "no test file of their own: " + ", ".join(untested)
