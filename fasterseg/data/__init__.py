"""Data: synthetic street scenes, Cityscapes and CamVid readers, transforms, tree checks."""
