"""om: the embedded service task scheduler."""

__version__ = "0.1.0"
