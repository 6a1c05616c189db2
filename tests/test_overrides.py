import pytest

from minibert.overrides import parse_overrides

DEFAULTS = dict(lr=1e-3, steps=10, name="run", resume=False, vocab=None)


def test_types_follow_the_defaults():
    s = parse_overrides(DEFAULTS, ["--lr=3e-4", "--steps=20", "--resume=true", "--vocab=some/dir", "--name=x=y"])
    assert s == dict(lr=3e-4, steps=20, name="x=y", resume=True, vocab="some/dir")
    assert parse_overrides(DEFAULTS, ["--lr=1"])["lr"] == 1.0 and isinstance(parse_overrides(DEFAULTS, ["--lr=1"])["lr"], float)
    assert parse_overrides(DEFAULTS, ["--vocab=none"])["vocab"] is None


@pytest.mark.parametrize("argv, message", [
    (["--stepz=3"], "unknown setting --stepz; did you mean --steps"),
    (["--steps=2.5"], "expects a int"),
    (["--resume=maybe"], "true or false"),
    (["steps=3"], "--key=value"),
])
def test_bad_overrides(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_overrides(DEFAULTS, argv)
