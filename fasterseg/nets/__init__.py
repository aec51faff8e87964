"""The networks: operators and their registry (`ops`), the search space's geometry (`space`), the supernet
(`supernet`), architectures as plain data (`arch`) and their derivation from a supernet (`derive`), the derived
network (`network`), hand-designed peers (`peers`), the published architectures (`published`), counts
(`counting`), memory (`footprint`), and building, loading, folding and running them (`build`, `onnx`)."""
