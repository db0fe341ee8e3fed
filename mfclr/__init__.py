"""mfclr: multi-format contrastive learning of music representations."""

__version__ = "0.1.0"
