"""Configuration, device setup and the ModelArts adapters (model-zoo layout)."""
