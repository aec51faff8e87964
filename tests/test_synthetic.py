import hashlib
from pathlib import Path

import numpy as np

from fasterseg.data.cityscapes import CityscapesDataset
from fasterseg.data.labels import CITYSCAPES_CLASSES
from fasterseg.data.synthetic import SyntheticSpec, ensure, generate, read_marker, tree_name


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


def test_same_seed_gives_identical_files(tmp_path):
    spec = SyntheticSpec(height=64, width=128, num_train=3, num_val=2, seed=11)
    a = _digest_tree(generate(tmp_path / "a", spec, progress=False))
    b = _digest_tree(generate(tmp_path / "b", spec, progress=False))
    assert a == b and len(a) == 4 * 5
    c = _digest_tree(generate(tmp_path / "c", SyntheticSpec(64, 128, 3, 2, seed=12), progress=False))
    assert set(c) == set(a) and c != a  # another seed: same names, other pictures


def test_cityscapes_layout_and_naming(tiny_tree):
    imgs = sorted((tiny_tree / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))
    assert len(imgs) == 8
    city = imgs[0].parent.name
    assert imgs[0].name.startswith(city + "_") and imgs[0].name.endswith("_000019_leftImg8bit.png")
    stem = imgs[0].name[: -len("_leftImg8bit.png")]
    for suffix in ("_gtFine_labelIds.png", "_gtFine_color.png"):
        assert (tiny_tree / "gtFine" / "train" / city / f"{stem}{suffix}").exists()


def test_reader_loads_synthetic_and_classes_cover_context_and_thin_objects(tmp_path):
    root = generate(tmp_path, SyntheticSpec(height=128, width=256, num_train=24, num_val=1, seed=0), progress=False)
    ds = CityscapesDataset(root, "train")
    seen = np.zeros(256, np.int64)
    for i in range(len(ds)):
        img, lab = ds.load(i)
        assert img.shape == (128, 256, 3) and lab.shape == (128, 256)
        seen += np.bincount(lab.ravel(), minlength=256)
    present = {CITYSCAPES_CLASSES[k] for k in range(19) if seen[k] > 0}
    large = {"road", "sidewalk", "building", "vegetation", "sky", "terrain"}
    thin = {"pole", "traffic sign", "traffic light", "person", "car"}
    assert large <= present and thin <= present and len(present) >= 10
    total = seen[:19].sum()
    assert seen[CITYSCAPES_CLASSES.index("pole")] / total < 0.02  # thin: a small share of pixels
    assert seen[CITYSCAPES_CLASSES.index("road")] / total > 0.1  # large regions
    # a tensor sample is normalised (3, H, W) float with int64 labels
    x, y = ds[0]
    assert x.shape == (3, 128, 256) and y.dtype.is_floating_point is False and abs(float(x.mean())) < 3


def test_ensure_reuses_a_tree_and_never_rewrites_it_for_another_spec(tmp_path):
    spec = SyntheticSpec(height=64, width=128, num_train=2, num_val=1, seed=0)
    tree = ensure(tmp_path, spec, progress=False)
    assert tree == tmp_path / tree_name(spec) and read_marker(tree)["digest"] == spec.digest()
    image = tree / "leftImg8bit" / "train" / "synthburg" / "synthburg_000000_000019_leftImg8bit.png"
    mtime = image.stat().st_mtime_ns
    assert ensure(tmp_path, spec, progress=False) == tree and image.stat().st_mtime_ns == mtime
    other = ensure(tmp_path, SyntheticSpec(height=64, width=128, num_train=1, num_val=1, seed=1), progress=False)
    assert other != tree and image.stat().st_mtime_ns == mtime  # another seed: a tree of its own, the first untouched
    assert len(list((other / "leftImg8bit" / "train").glob("*/*.png"))) == 1
    assert not list(tmp_path.glob(".*partial*"))
