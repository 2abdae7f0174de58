"""gobuild: the same Go environment for every architecture, and what the toolchain costs on each."""

__version__ = "0.1.0"
