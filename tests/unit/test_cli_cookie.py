from click.testing import CliRunner

from fastopen.cli import main

KEY = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"


def test_cookie_command_prints_linux_vector() -> None:
    result = CliRunner().invoke(main, ["cookie", KEY, "192.0.2.1", "192.168.0.1"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "3021b9d889017eeb"


def test_cookie_command_uses_primary_of_two_keys() -> None:
    ring = f"{KEY},00000000-00000000-00000000-00000000"
    result = CliRunner().invoke(main, ["cookie", ring, "fd3d:fa7b:d17d::1", "fd3d:a0b:17d6::1"])
    assert result.output.strip() == "c1d1e9742a47a9bc"


def test_cookie_command_rejects_bad_key_clearly() -> None:
    result = CliRunner().invoke(main, ["cookie", "a1-b2-zz9q-d4", "192.0.2.1", "192.168.0.1"])
    assert result.exit_code == 2
    assert "word 3" in result.output
    assert "zz9q" not in result.output  # a mistyped key is not echoed back


def test_cookie_command_rejects_mixed_families() -> None:
    result = CliRunner().invoke(main, ["cookie", KEY, "192.0.2.1", "fd00::1"])
    assert result.exit_code == 2
    assert "same family" in result.output
