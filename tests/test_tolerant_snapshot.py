"""The tolerant comparison must be able to fail."""

from tests.tolerant_snapshot import TolerantJSONExtension, compare


def test_within_tolerance_matches():
    assert compare({"loss": [2.0, 1.5]}, {"loss": [2.0003, 1.4997]}) == []


def test_beyond_absolute_tolerance_fails():
    assert any("loss[1]" in p for p in compare({"loss": [2.0, 1.5]}, {"loss": [2.0, 1.51]}))


def test_mean_tolerance_fails_on_a_systematic_shift():
    problems = compare({"x": [1.0 + 0.0015] * 10}, {"x": [1.0] * 10})
    assert problems and "mean" in problems[-1]


def test_environment_is_recorded_not_compared_and_structure_is():
    assert compare({"x": [1.0], "environment": {"torch": "a"}}, {"x": [1.0], "environment": {"torch": "b"}}) == []
    assert compare({"x": [1.0, 2.0]}, {"x": [1.0]})
    assert compare({"x": "a"}, {"x": "b"})


def test_extension_matches_uses_the_tolerance():
    ext = TolerantJSONExtension()
    a = ext.serialize({"loss": [2.0000001]})
    assert ext.matches(serialized_data=a, snapshot_data=ext.serialize({"loss": [2.0]}))
    assert not ext.matches(serialized_data=a, snapshot_data=ext.serialize({"loss": [2.1]}))
