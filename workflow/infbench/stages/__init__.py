"""The pipeline's stages: one module per rule's command (data, model, train, export, quantize, reference, accuracy)."""
