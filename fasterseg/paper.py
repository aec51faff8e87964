"""What the FasterSeg paper (Chen et al., ICLR 2020) reports for its published student on Cityscapes, as data: the
figures the kit's results are set beside (notebook 09, README). The speed is TensorRT fp32 on a GTX 1080Ti at
1024x2048, batch 1, with nearest interpolation in the timed copy of the model (the trained model is bilinear)."""
from __future__ import annotations

#: the published student on Cityscapes (paper, Table 3 and text)
PAPER_STUDENT = {
    "val_miou": 73.1,  # % on Cityscapes val, full resolution
    "test_miou": 71.5,  # % on the Cityscapes test server
    "fps": 163.9,  # GTX 1080Ti, TensorRT fp32, 1024x2048, batch 1
    "params_M": 4.4,
    "gflops": 28.2,  # as thop counts them (convolutions, BN and resizing)
    "resolution": (1024, 2048),
    "device": "GTX 1080Ti, TensorRT fp32, batch 1",
}
PAPER_FPS = PAPER_STUDENT["fps"]
