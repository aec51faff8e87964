import shutil

import numpy as np
import pytest
from PIL import Image

from fasterseg.data.check import check_tree
from fasterseg.data.cityscapes import CamVidDataset, CityscapesDataset, DataTreeError


@pytest.fixture
def tree(tiny_tree, tmp_path):
    dst = tmp_path / "tree"
    shutil.copytree(tiny_tree, dst)
    return dst


def _first_label(tree):
    return sorted((tree / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"))[0]


def test_missing_root_and_folder(tree, tmp_path):
    with pytest.raises(DataTreeError, match="does not exist"):
        CityscapesDataset(tmp_path / "nowhere", "train")
    shutil.rmtree(tree / "gtFine" / "val")
    with pytest.raises(DataTreeError, match=r"missing folder .*gtFine/val.*gtFine_trainvaltest"):
        CityscapesDataset(tree, "val")


def test_image_without_label(tree):
    _first_label(tree).unlink()
    with pytest.raises(DataTreeError, match="has no label: expected .*_gtFine_labelIds.png"):
        CityscapesDataset(tree, "train")


def test_label_of_wrong_size(tree):
    p = _first_label(tree)
    Image.fromarray(np.full((10, 20), 7, np.uint8)).save(p)
    with pytest.raises(DataTreeError, match="is 20x10 but its image .* is 128x64"):
        check_tree(tree)


def test_label_ids_outside_known_set(tree):
    p = _first_label(tree)
    lab = np.asarray(Image.open(p)).copy()
    lab[0, 0] = 77
    Image.fromarray(lab).save(p)
    with pytest.raises(DataTreeError, match=r"holds ids \[77\] outside the Cityscapes label ids"):
        check_tree(tree)


def test_unreadable_file(tree):
    img = sorted((tree / "leftImg8bit" / "train").glob("*/*.png"))[0]
    img.write_bytes(b"not a png")
    with pytest.raises(DataTreeError, match="cannot read image .*Replace or delete"):
        check_tree(tree)


def test_colour_label_is_refused(tree):
    p = _first_label(tree)
    Image.open(str(p).replace("labelIds", "color")).save(p)
    with pytest.raises(DataTreeError, match="single-channel"):
        CityscapesDataset(tree, "train").load(0)


def test_check_summary(tree):
    s = check_tree(tree)
    assert s.counts == {"train": 8, "val": 4}
    freq = s.frequencies()
    assert freq["train"].sum() == pytest.approx(100)
    assert "road" in s.report() and "ignored" in s.pixels.index


def _camvid_tree(root, n=3, h=24, w=32):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / split / f"0001TP_{i:06d}.png")
            Image.fromarray(rng.integers(0, 12, (h, w), dtype=np.uint8)).save(
                root / f"{split}annot" / f"0001TP_{i:06d}.png"
            )
    return root


def test_camvid_hand_made_tree(tmp_path):
    root = _camvid_tree(tmp_path / "camvid")
    ds = CamVidDataset(root, "train")
    img, lab = ds.load(0)
    assert img.shape == (24, 32, 3) and lab.max() == 255 and lab[lab != 255].max() <= 10
    raw = np.asarray(Image.open(root / "trainannot" / "0001TP_000000.png"))
    assert np.array_equal(lab == 255, raw == 11)
    assert check_tree(root, "camvid").counts == {"train": 3, "val": 3}
    Image.fromarray(np.full((24, 32), 40, np.uint8)).save(root / "valannot" / "0001TP_000001.png")
    with pytest.raises(DataTreeError, match="outside CamVid's 0..11"):
        check_tree(root, "camvid")
