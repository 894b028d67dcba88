"""Config values out of range are refused at load with the line and the bound: an IMAP IDLE
renewal of 0 seconds was a busy loop, over 1740 broke RFC 2177's 29 minutes (found by
review)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.settings import Settings

CONFIG = """\
secret_key: x
mailboxes:
  sales:
    address: sales@example.com
    imap: {{host: 127.0.0.1, tls: none, {setting}}}
"""


@pytest.mark.parametrize(("setting", "said"), [
    ("idle_renew_seconds: 0", "idle_renew_seconds: must be at least 1"),
    ("idle_renew_seconds: 1800", "idle_renew_seconds: must be at most 1740"),
    ("poll_seconds: 0", "poll_seconds: must be at least 1"),
])
def test_an_imap_wait_out_of_range_is_refused(tmp_path: Path, setting: str, said: str) -> None:
    config = tmp_path / "nurture.yaml"
    config.write_text(CONFIG.format(setting=setting))
    with pytest.raises(ConfigError) as refused:
        Settings.load(config)
    assert str(refused.value) == f"{config}:5: mailboxes.sales.imap.{said}"


def test_values_in_range_load(tmp_path: Path) -> None:
    config = tmp_path / "nurture.yaml"
    config.write_text(CONFIG.format(setting="idle_renew_seconds: 1740, poll_seconds: 1"))
    imap = Settings.load(config).mailboxes["sales"].imap
    assert imap is not None and (imap.idle_renew_seconds, imap.poll_seconds) == (1740, 1)
