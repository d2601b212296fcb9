"""Text model, image voting ensemble, fusion, explanations and training."""
