"""Models on the host: static metrics of ONNX files and the example-model zoo."""
