"""The run core's shape: no import circle, and one seam between local and object-store RUN folders."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from autoshoot.run.folder import LocalRunFolder, ObjectStoreRunFolder, open_run

PACKAGE = Path(__file__).resolve().parents[1] / "autoshoot"
CORE = {
    "autoshoot.run.keys": PACKAGE / "run" / "keys.py",
    "autoshoot.run.store": PACKAGE / "run" / "store.py",
    "autoshoot.run.worker": PACKAGE / "run" / "worker.py",
    "autoshoot.run.recipe": PACKAGE / "run" / "recipe.py",
    "autoshoot.run.staged": PACKAGE / "run" / "staged.py",
    "autoshoot.run.engines.local": PACKAGE / "run" / "engines" / "local.py",
    "autoshoot.report": PACKAGE / "report" / "__init__.py",
    "autoshoot.report.results": PACKAGE / "report" / "results.py",
    "autoshoot.report.html": PACKAGE / "report" / "html.py",
    "autoshoot.report.review.nightly": PACKAGE / "report" / "review" / "nightly.py",
    "autoshoot.run.engines.ray": PACKAGE / "run" / "engines" / "ray.py",
    "autoshoot.run.folder": PACKAGE / "run" / "folder.py",
    "autoshoot.run.reuse": PACKAGE / "run" / "reuse.py",
    "autoshoot.run.layout": PACKAGE / "run" / "layout.py",
    "autoshoot.run.models": PACKAGE / "run" / "models.py",
}


def imported_modules(path: Path) -> set[str]:
    """Every autoshoot module the file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autoshoot"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("autoshoot"))
    return names


def test_the_run_core_and_the_report_import_each_other_in_no_circle() -> None:
    graph = {name: imported_modules(path) & set(CORE) for name, path in CORE.items()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    circles = [name for name in graph if reaches(name, name, {name})]
    assert circles == [], {name: sorted(graph[name]) for name in circles}
    for name in graph:
        if name.startswith("autoshoot.report"):
            assert not any(m.startswith(RECIPE) for m in graph[name]), name


# The rooms below the recipe: the brief and the report import neither the recipe (runner, stages,
# engines) nor the CLI; the recipe imports them.
RECIPE = (
    "autoshoot.run.keys",
    "autoshoot.run.store",
    "autoshoot.run.worker",
    "autoshoot.run.recipe",
    "autoshoot.run.staged",
    "autoshoot.run.engines",
)
ABOVE_THE_ROOMS = (
    *RECIPE,
    "autoshoot.runner",
    "autoshoot.staged",
    "autoshoot.stages",
    "autoshoot.engines",
    "autoshoot.commands",
)


def test_the_brief_and_the_report_import_nothing_above_them() -> None:
    checked = 0
    for room in ("brief", "report"):
        for path in sorted((PACKAGE / room).rglob("*.py")):
            above = sorted(m for m in imported_modules(path) if m.startswith(ABOVE_THE_ROOMS))
            assert above == [], (path.relative_to(PACKAGE).as_posix(), above)
            checked += 1
    assert checked >= 12  # brief/: 6 modules, report/: 3 and review/'s 7


def test_only_the_run_folder_asks_local_or_object_store() -> None:
    for name in (
        "autoshoot.run.worker",
        "autoshoot.run.recipe",
        "autoshoot.run.staged",
        "autoshoot.run.engines.local",
        "autoshoot.run.engines.ray",
    ):
        text = CORE[name].read_text(encoding="utf-8")
        assert "is_uri(" not in text, name
        assert 'getattr(worker, "remote"' not in text, name
        assert "isinstance(run, RemoteRun)" not in text, name


def test_open_run_gives_the_right_folder(tmp_path: Path) -> None:
    local = open_run(tmp_path / "run")
    assert isinstance(local, LocalRunFolder) and local.local_dir == tmp_path / "run" and local.is_new()
    assert open_run(local) is local
    memory = open_run("memory://bucket/runs/x")
    try:
        assert isinstance(memory, ObjectStoreRunFolder) and memory.location == "memory://bucket/runs/x"
        assert memory.local_dir.is_dir()  # its staging folder
        memory.write_marker(".mark", "hello\n")
        assert memory.marker_exists(".mark")
        memory.remove_marker(".mark")
        assert not memory.marker_exists(".mark")
    finally:
        memory.close()
    assert not memory.local_dir.exists()


def test_the_old_import_paths_give_the_same_objects() -> None:
    import autoshoot.engines.ray_engine as old_ray
    import autoshoot.run.engines.ray as ray
    import autoshoot.runner as runner
    import autoshoot.staged as old_staged
    from autoshoot.run import engines, keys, recipe, staged, store, worker

    assert runner.run_catalog is recipe.run_catalog and runner._run_catalog is recipe._run_catalog
    assert runner.SkuWorker is worker.SkuWorker and runner.Plan is worker.Plan
    assert runner.SkuStore is store.SkuStore and runner.stage_keys is keys.stage_keys
    assert runner.LocalEngine is engines.local.LocalEngine and runner.sku_folder_name is not None
    assert old_staged.StagedSkuWorker is staged.StagedSkuWorker
    assert old_ray.RayEngine is ray.RayEngine


def test_the_renderers_speed_tricks_and_tiny_models_keep_their_old_names() -> None:
    from autoshoot.backends import sdxl, sdxl_speed, sdxl_tiny

    for name in ("compile_blocks", "cfg_steps", "prompt_half", "sdpa_context", "fuse_attention_projections"):
        assert getattr(sdxl, name) is getattr(sdxl_speed, name)
    assert sdxl.share_cross_attention_context is sdxl_speed.share_cross_attention_context
    assert sdxl.SharedContextAttnProcessor is sdxl_speed.SharedContextAttnProcessor
    for name in (
        "build_tiny_components",
        "tiny_model_set_on_disk",
        "build_byte_tokenizers",
        "save_components",
    ):
        assert getattr(sdxl, name) is getattr(sdxl_tiny, name)
    with pytest.raises(AttributeError):
        sdxl.no_such_name  # noqa: B018
