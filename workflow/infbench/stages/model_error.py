"""The one error of the model stages (the zoo, a user's ONNX file, a Hugging Face folder): its own module
so that each of them raises it without importing the others."""


class ModelError(ValueError):
    """A model name, weights or checkpoint that cannot be used; the message says how to fix it."""
