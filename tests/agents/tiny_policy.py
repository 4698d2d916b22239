"""A policy config small enough for unit tests (16 px images, a few thousand parameters)."""

SMALL = dict(image_size=16, channels=[8, 16], image_features=32, attn_dim=16, attn_heads=2,
             lang_features=16, state_hidden=16, trunk_hidden=[32], max_tokens=8)
