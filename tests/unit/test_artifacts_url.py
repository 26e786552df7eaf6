"""Choosing the artifact store from settings: boto3 is imported only for an s3:// URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from strangler_bridge.artifacts import LocalArtifactStore, open_store
from strangler_bridge.errors import ConfigError
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.unit


def test_a_file_url_or_none_is_a_directory(tmp_path: Path) -> None:
    assert isinstance(open_store(Settings.load(artifacts_dir=tmp_path)), LocalArtifactStore)
    store = open_store(Settings.load(artifacts_url=f"file://{tmp_path}/a%20b"))
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "a b"


@pytest.mark.parametrize("url", ["http://bucket/prefix", "s3:/bucket", "ftp://x/y"])
def test_other_urls_are_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError, match="STRANGLER_ARTIFACTS_URL"):
        open_store(Settings.load(artifacts_url=url))


def test_a_file_url_names_no_host() -> None:
    with pytest.raises(ConfigError, match="file:///path"):
        open_store(Settings.load(artifacts_url="file://server/share"))


def test_the_default_store_does_not_import_boto3(tmp_path: Path) -> None:
    code = (
        "import sys; from strangler_bridge.artifacts import open_store; from strangler_bridge.settings import Settings;"
        f"open_store(Settings.load(artifacts_dir={str(tmp_path)!r})).put('jobs/j/segments.json', b'{{}}');"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
