"""Building a stream process: a data directory it cannot write is a settings error naming the
variable, not a traceback."""

from __future__ import annotations

import pytest

from driftwarden.core.errors import SettingsError
from driftwarden.core.settings import load_settings
from driftwarden.streams.app import create_app


def test_a_data_dir_that_cannot_be_written_names_the_variable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = load_settings(data_dir=blocker / "state")
    with pytest.raises(SettingsError) as caught:
        create_app("score", settings)
    assert caught.value.problems[0][0] == "DRIFTWARDEN_DATA_DIR"
    assert "not writable" in str(caught.value) and "mount a writable volume" in str(caught.value)
