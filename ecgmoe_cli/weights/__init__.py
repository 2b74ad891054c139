"""Weights on disk: `meta` reads the JSON sidecars without torch, `tensors` the hash-checked
safetensors files, `store` saves and loads backbones, adapters and the beat head."""
