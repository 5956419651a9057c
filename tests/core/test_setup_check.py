"""The set-up check (core/setup_check.py): every module imported for real, failures named in one line
with the one command that installs them, a module seen to import once not imported again."""

import sys

import pytest

from stages.lib.core.setup_check import LOCK_INSTALL, Needs, SetupError, check_needs, install_command


def test_the_install_command_joins_the_extras_and_falls_back_to_the_lock():
    assert install_command(["dlib", "audit", "dlib"]) == 'pip install -e ".[audit,dlib]"'
    assert install_command(["dlib", None]) == LOCK_INSTALL


def test_a_stubbed_module_and_a_failing_probe_are_named_with_who_needs_them(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fake_runtime_xyz", None)

    def probe():
        raise ImportError("model files missing: /x/model.dat\nsecond line")

    needs = {"model a": Needs(("json", "fake_runtime_xyz"), extra="audit"),
             "backbone b": Needs(("json",), extra="dlib", probe=probe)}
    with pytest.raises(SetupError) as caught:
        check_needs(needs, record=tmp_path / "seen.json")
    message = str(caught.value)
    assert "\n" not in message and "fake_runtime_xyz (" in message and "for model a" in message
    assert "model files missing: /x/model.dat for backbone b" in message and "json" not in message.split(":")[1]
    assert message.endswith('install with: pip install -e ".[audit,dlib]"')


def test_a_module_seen_to_import_is_not_imported_again_until_its_file_changes(tmp_path, monkeypatch):
    package = tmp_path / "site" / "slow_pkg_xyz"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import builtins\nbuiltins.SLOW_PKG_IMPORTS = getattr(builtins, 'SLOW_PKG_IMPORTS', 0) + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    record = tmp_path / "seen.json"
    import builtins

    for _ in range(2):
        check_needs({"x": Needs(("slow_pkg_xyz",))}, record=record)
        sys.modules.pop("slow_pkg_xyz", None)
    assert builtins.SLOW_PKG_IMPORTS == 1
    (package / "__init__.py").write_text("raise ImportError('half-installed')\n")
    with pytest.raises(SetupError, match=r"slow_pkg_xyz \(half-installed\) for x; install with: pip install --require"):
        check_needs({"x": Needs(("slow_pkg_xyz",))}, record=record)
    del builtins.SLOW_PKG_IMPORTS
