"""`privmed --help` stays fast: building the command tree must not load torch, MONAI, Opacus or Ray."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "monai", "opacus", "ray", "dp_accounting", "scipy.ndimage")


def test_cli_import_loads_no_heavy_library() -> None:
    code = "import sys, privmed.cli; print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"importing privmed.cli loaded {loaded}: import it inside the command that needs it"


def test_privacy_package_names_resolve_lazily() -> None:
    import privmed.privacy as privacy

    for name in privacy.__all__:
        assert getattr(privacy, name) is not None
    assert "PrivacyReport" in dir(privacy)
