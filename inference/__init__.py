"""Serving: the SageMaker handler (model_fn, input_fn, predict_fn, output_fn), its codecs, the model
backends (ONNX Runtime or the SavedModel signature) and the HTTP server behind `serve`.

Importing this package loads nothing heavy: TensorFlow is imported only when the SavedModel backend
is chosen, and never next to ONNX Runtime.
"""
