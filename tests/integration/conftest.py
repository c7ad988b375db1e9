"""pytest fixtures for dovekie's integration tests.

Every test gets its own private Dovecot (see dovekie_harness.py), booted
from Debian's packages, with the plugin and modules copied in from the
build tree. Nothing system-wide is touched apart from the `dovekie-test`
system account created on first use when running as root.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from dovekie_harness import PrivateDovecot, is_dovecot24

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_RELPATH = Path("hosts/dovecot/.libs/lib90_dovekie_plugin.so")


def _find_modules(build_dir: Path) -> list[Path]:
    """Built GModules: <build>/modules/<name>/.libs/<name>.so."""
    return sorted(build_dir.glob("modules/*/.libs/*.so"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "plain_build_only(reason): a measurement the sanitizer run cannot make; "
        "not collected when DOVEKIE_SANITIZER_PRELOAD is set")
    config.addinivalue_line(
        "markers", "stress: a long randomized run, opt-in like the benchmarks and fuzzing; "
        "collected only when DOVEKIE_STRESS_SECONDS is set")
    config.addinivalue_line(
        "markers", "dovecot23_only(reason): what Dovecot 2.4 no longer has; skipped "
        "there with the reason, which the summary lists")


def pytest_collection_modifyitems(config, items):
    # tests/run counts a skipped test as failed (a skip hides work not
    # done), so a test that cannot run here is deselected, visibly,
    # instead of skipped: under ASan a plain_build_only test, and a stress
    # test unless DOVEKIE_STRESS_SECONDS asks for it.
    drop_plain = bool(os.environ.get("DOVEKIE_SANITIZER_PRELOAD"))
    drop_stress = not os.environ.get("DOVEKIE_STRESS_SECONDS")
    dropped = [item for item in items
               if (drop_plain and item.get_closest_marker("plain_build_only"))
               or (drop_stress and item.get_closest_marker("stress"))]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]
    if shutil.which("dovecot") and is_dovecot24():
        for item in items:
            marker = item.get_closest_marker("dovecot23_only")
            if marker:
                item.add_marker(pytest.mark.skip(
                    reason="Dovecot 2.3 only: " + marker.kwargs.get(
                        "reason", marker.args[0] if marker.args else "")))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Remember each phase's outcome on the item so fixtures can tell in
    # their teardown whether the test failed (and then dump the log).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session", autouse=True)
def _require_dovecot():
    missing = [tool for tool in ("dovecot", "doveadm", "doveconf")
               if shutil.which(tool) is None]
    if missing:
        pytest.fail("Dovecot is not installed (missing: " + ", ".join(missing)
                    + "); install dovecot-core dovecot-imapd dovecot-pop3d "
                    "dovecot-lmtpd", pytrace=False)


@pytest.fixture(scope="session")
def build_dir() -> Path:
    """Top of the build tree (DOVEKIE_BUILD_DIR, default: repo root)."""
    return Path(os.environ.get("DOVEKIE_BUILD_DIR", REPO_ROOT)).resolve()


@pytest.fixture(scope="session")
def plugin_path(build_dir: Path) -> Path:
    path = build_dir / PLUGIN_RELPATH
    if not path.is_file():
        # A missing build is an error, not a reason to skip.
        pytest.fail(f"dovekie Dovecot plugin not built: {path} is missing; "
                    f"run ./autogen.sh && ./configure && make in {build_dir}",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def module_paths(build_dir: Path) -> list[Path]:
    paths = _find_modules(build_dir)
    if not paths:
        pytest.fail(f"no dovekie modules built under {build_dir}/modules/"
                    "*/.libs/*.so", pytrace=False)
    return paths


@pytest.fixture(scope="session")
def example_module(module_paths: list[Path]) -> Path:
    for path in module_paths:
        if path.name == "example.so":
            return path
    pytest.fail("example module not built (modules/example/.libs/example.so)",
                pytrace=False)


@pytest.fixture(scope="session")
def antivirus_module(module_paths: list[Path]) -> Path:
    for path in module_paths:
        if path.name == "antivirus.so":
            return path
    pytest.fail("antivirus module not built (modules/antivirus/.libs/antivirus.so)",
                pytrace=False)


@pytest.fixture
def dovecot(request):
    """Factory: dovecot(**PrivateDovecot kwargs) -> started PrivateDovecot.

    Every instance is stopped at teardown, whatever the test outcome. When a
    test fails, the tail of each instance's log is printed to stderr, which
    pytest shows in the report.
    """
    started: list[PrivateDovecot] = []

    def make(**kwargs) -> PrivateDovecot:
        instance = PrivateDovecot(**kwargs)
        started.append(instance)
        instance.start()
        return instance

    yield make

    failed = getattr(request.node, "rep_call", None)
    for instance in started:
        if failed is not None and failed.failed and instance.log_path:
            print(f"\n--- {instance!r} log tail:\n{instance.log_tail(80)}",
                  file=sys.stderr)
        instance.stop()


@pytest.fixture
def dovekie(dovecot, plugin_path, example_module):
    """Factory for a Dovecot with the dovekie plugin and example module.

    dovekie(settings={...}, users=..., **other PrivateDovecot kwargs).
    `settings` is merged over `dovekie_modules = example`.
    """

    def make(settings=None, **kwargs) -> PrivateDovecot:
        plugin_settings = {"dovekie_modules": "example"}
        plugin_settings.update(settings or {})
        kwargs.setdefault("plugin_path", plugin_path)
        kwargs.setdefault("module_files", [example_module])
        return dovecot(plugin_settings=plugin_settings, **kwargs)

    return make
