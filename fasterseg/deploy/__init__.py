"""Deployment: ONNX export checked against PyTorch, int8, TensorRT (`export`), the deployed forms side by side
(`forms`), and prediction on folders of images (`predict`)."""
