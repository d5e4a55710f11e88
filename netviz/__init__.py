"""netviz: map network flows between processes across a group of Linux machines."""

__version__ = "0.1.0"
