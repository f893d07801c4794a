"""The package as installed: twistd finds both roles, the CLI is there, data ships."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = "from twisted.scripts.twistd import run; run()"


def test_twistd_lists_both_roles():
    out = subprocess.run(
        [sys.executable, "-c", TWISTD, "--help"], capture_output=True, text=True, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    assert "cheesetracker" in out.stdout and "cheesemember" in out.stdout


def test_each_role_has_help_for_every_option():
    for role, options in (
        ("cheesetracker", ["--port", "--interface", "--timeout", "--max-members", "--max-per-ip"]),
        (
            "cheesemember",
            [
                "--tracker",
                "--port",
                "--data-dir",
                "--network",
                "--mine",
                "--no-mine",
                "--miner-address",
                "--api-port",
                "--miner-port",
                "--peers",
                "--max-inbound",
                "--host",
                "--connect",
                "--reindex",
                "--mining-workers",
            ],
        ),
    ):
        out = subprocess.run(
            [sys.executable, "-c", TWISTD, role, "--help"], capture_output=True, text=True, cwd="/"
        )
        assert out.returncode == 0, out.stderr
        for option in options:
            assert option in out.stdout, (role, option)


def test_plugin_directory_has_only_service_makers():
    plugins = os.path.join(ROOT, "twisted", "plugins")
    assert not os.path.exists(os.path.join(plugins, "__init__.py"))
    source = open(os.path.join(plugins, "cheesecoin_plugins.py")).read()
    assert source.count("ServiceMaker(") == 2
    assert "cheesecoin.tracker.tap" in source and "cheesecoin.member.tap" in source


def test_console_script_and_shipped_network():
    exe = os.path.join(os.path.dirname(sys.executable), "cheesecoin")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "verify" in out.stdout
    from cheesecoin.core.cheese import DEFAULT_NETWORK_FILE, load_network

    assert os.path.exists(DEFAULT_NETWORK_FILE)
    assert load_network().name == "cheesecoin"


def test_core_modules_do_not_import_twisted():
    core = [
        "core.cheese",
        "core.tx",
        "core.ledger",
        "core.stack",
        "core.tree",
        "core.mempool",
        "core.pow",
        "core.errors",
        "core.formats",
        "core.node",
        "storage.sqlite",
        "storage.reindex",
        "storage.wallet",
        "wire.codec",
        "wire.limits",
        "tracker.registry",
        "testing.chain",
    ]
    code = (
        "import sys\n"
        + "".join(f"import cheesecoin.{m}\n" for m in core)
        + (
            "bad = [m for m in sys.modules if m == 'twisted' or m.startswith('twisted.')]\n"
            "assert not bad, bad\n"
        )
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_building_the_package_gives_no_setuptools_warnings_and_ships_the_data(tmp_path):
    """What `pip install .` builds: no 'package is absent' warnings about the
    data folders, and the network file, explorer and plugin are inside."""
    import zipfile

    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), ROOT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert "absent from the `packages` configuration" not in output
    [wheel] = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    names = set(zipfile.ZipFile(tmp_path / wheel).namelist())
    for shipped in (
        "cheesecoin/data/blue-cheese-cheesecoin.json",
        "cheesecoin/web/explorer/index.html",
        "cheesecoin/web/explorer/app.js",
        "cheesecoin/web/explorer/style.css",
        "twisted/plugins/cheesecoin_plugins.py",
    ):
        assert shipped in names


def test_a_machine_without_a_compiler_still_builds_the_package(tmp_path):
    """The native nonce search is optional: with no working C compiler the
    package builds without it (and cheesecoin.core.pow searches in Python)."""
    import shutil
    import zipfile

    # A copy of the sources without any extension built in place (an editable install builds one).
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", "build", "*.so", "*.egg-info", ".git", "__pycache__", ".hypothesis"
        ),
    )
    out = tmp_path / "wheel"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, CC="/bin/false"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = [p for p in os.listdir(out) if p.endswith(".whl")]
    names = zipfile.ZipFile(out / wheel).namelist()
    assert "cheesecoin/core/pow.py" in names and not [n for n in names if n.endswith(".so")]
