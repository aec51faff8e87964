import pytest

from fasterseg.config import RunConfig, apply_overrides, profile


@pytest.mark.parametrize("name", ["tiny", "cpu", "paper"])
def test_profiles_round_trip(name, tmp_path):
    cfg = profile(name)
    assert cfg.profile == name
    assert RunConfig.load(cfg.save(tmp_path / "c.json")) == cfg


def test_paper_profile_values():
    cfg = profile("paper")
    assert cfg.space.layers == 16 and cfg.space.fch == 12 and cfg.data.dataset == "cityscapes"


def test_overrides_and_errors():
    cfg = apply_overrides(profile("tiny"), ["data.num_train=8", "space.fch=6", "data.root=/x"])
    assert (cfg.data.num_train, cfg.space.fch, cfg.data.root) == (8, 6, "/x")
    with pytest.raises(ValueError, match="has no field 'nope'"):
        apply_overrides(profile("tiny"), ["data.nope=1"])
    with pytest.raises(ValueError, match="section.field=value"):
        apply_overrides(profile("tiny"), ["data.num_train"])
    with pytest.raises(ValueError, match="unknown profile"):
        profile("huge")


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("FASTERSEG_PROFILE", "cpu")
    assert profile().profile == "cpu"


def test_stem_option_is_off_in_every_profile_and_checked():
    from fasterseg.config import ConfigError

    assert all(profile(n).space.stem == "original" for n in ("tiny", "cpu", "paper"))
    assert apply_overrides(profile("tiny"), ["space.stem=light"]).validate(("space",)).space.stem == "light"
    with pytest.raises(ConfigError, match="space.stem"):
        apply_overrides(profile("tiny"), ["space.stem=thin"]).validate(("space",))
