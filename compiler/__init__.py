"""fusecc: an operator-fusion compiler for ONNX models."""
