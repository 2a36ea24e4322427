"""suanli: the city compute network."""

__version__ = "0.1.0"
