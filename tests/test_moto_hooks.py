"""deploy/moto_hooks.py reaches into moto's server: these fail with one clear line when moto moves."""
from __future__ import annotations

import pytest

from deploy import moto_hooks
from deploy.errors import SandboxError


def test_every_moto_internal_the_sandbox_uses_is_where_it_was():
    version = moto_hooks.check_moto()
    assert version.startswith("5.2."), f"moto {version} is outside setup.py's moto[server]>=5.2.5,<5.3"


def test_a_changed_signature_is_named(monkeypatch):
    monkeypatch.setitem(moto_hooks.EXPECTED, "moto.core.responses.BaseResponse._get_action", ["self", "request"])
    with pytest.raises(SandboxError, match=r"BaseResponse\._get_action takes \['self'\]; the sandbox expects"):
        moto_hooks.check_moto()


def test_a_missing_internal_is_named(monkeypatch):
    monkeypatch.setitem(moto_hooks.EXPECTED, "moto.backends.no_such_function", [])
    with pytest.raises(SandboxError, match=r"has no moto\.backends\.no_such_function"):
        moto_hooks.check_moto()

