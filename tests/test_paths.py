"""The one cache directory: TEDREC_FAST_CACHE_DIR, the deprecated TEDREC_FAST_CACHE, the default."""

import warnings
from pathlib import Path

import pytest

from tedrec_fast.paths import CACHE_ENV, DEPRECATED_CACHE_ENV, cache_dir


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv(DEPRECATED_CACHE_ENV, raising=False)
    return monkeypatch


def test_default_is_under_home(no_env, tmp_path):
    no_env.setenv("HOME", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache_dir() == tmp_path / ".cache" / "tedrec_fast"
    assert not (tmp_path / ".cache").exists()  # the root is not created


def test_env_variable_moves_it_and_kinds_are_created(no_env, tmp_path):
    no_env.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert cache_dir("nvrtc") == tmp_path / "c" / "nvrtc" and (tmp_path / "c" / "nvrtc").is_dir()


def test_relative_env_value_is_made_absolute(no_env, tmp_path):
    no_env.chdir(tmp_path)
    no_env.setenv(CACHE_ENV, "rel")
    assert cache_dir() == tmp_path / "rel" and cache_dir().is_absolute()


def test_old_name_still_works_with_a_deprecation_warning(no_env, tmp_path):
    no_env.setenv(DEPRECATED_CACHE_ENV, str(tmp_path / "old"))
    with pytest.warns(DeprecationWarning, match=CACHE_ENV):
        assert cache_dir() == tmp_path / "old"
    no_env.setenv(CACHE_ENV, str(tmp_path / "new"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache_dir() == tmp_path / "new"  # the new name wins, silently


@pytest.mark.parametrize("kind", ["", "/abs", "../up", "a/../../b"])
def test_bad_kind(no_env, tmp_path, kind):
    no_env.setenv(CACHE_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="kind"):
        cache_dir(kind)


def test_every_user_of_the_cache_resolves_it_here(no_env, tmp_path):
    """Downloads, prepared data, encoder files and compiled kernels all follow the one variable."""
    from tedrec_fast.config import RunConfig
    from tedrec_fast.cuda import emulator, nvrtc
    from tedrec_fast.data import prepare

    no_env.setenv(CACHE_ENV, str(tmp_path))
    assert Path(RunConfig().data_dir) == tmp_path
    assert prepare.cache_dir is cache_dir and emulator.cache_dir is cache_dir and nvrtc.cache_dir is cache_dir


def test_the_tests_keep_out_of_the_users_caches():
    """conftest.py points Triton's cache and the package's at the tests' own directory (in the temp dir)."""
    import os

    from tests.conftest import TEST_CACHE_DIR

    assert os.environ["TRITON_CACHE_DIR"] == str(TEST_CACHE_DIR / "triton")
    assert cache_dir() == (TEST_CACHE_DIR / "tedrec_fast").absolute()
