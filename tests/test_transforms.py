import numpy as np

from fasterseg.data.cityscapes import CityscapesDataset
from fasterseg.data.transforms import EvalTransform, TrainTransform, pad_to_multiple


def test_train_transform_is_seeded_and_crops(tiny_tree):
    ds = CityscapesDataset(tiny_tree, "train", TrainTransform(32, 64, downsample=2), seed=5)
    x1, y1 = ds[2]
    x2, y2 = ds[2]
    assert x1.shape == (3, 32, 64) and y1.shape == (32, 64)
    assert (x1 == x2).all() and (y1 == y2).all()
    ds.epoch = 1
    x3, _ = ds[2]
    assert not (x3 == x1).all()  # another epoch, another crop


def test_crop_larger_than_image_pads_with_ignore():
    img = np.zeros((10, 10, 3), np.uint8)
    lab = np.zeros((10, 10), np.uint8)
    x, y = TrainTransform(32, 32, 1.0, 1.0, flip=False)(img, lab, np.random.default_rng(0))
    assert x.shape == (3, 32, 32) and int((y == 255).sum()) == 32 * 32 - 100


def test_pad_to_multiple_and_eval_transform():
    img, lab, pad = pad_to_multiple(np.zeros((33, 64, 3), np.uint8), np.zeros((33, 64), np.uint8))
    assert img.shape[:2] == (64, 64) and pad == (31, 0) and (lab[33:] == 255).all()
    x, y = EvalTransform()(np.zeros((40, 70, 3), np.uint8), np.zeros((40, 70), np.uint8))
    assert x.shape == (3, 64, 96) and y.shape == (64, 96)
