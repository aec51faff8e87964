"""FasterSeg kit: neural architecture search for real-time semantic segmentation (Chen et al., ICLR 2020)."""
__version__ = "0.1.0"
