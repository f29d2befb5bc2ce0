"""SynViTA: weighted synthetic videos and semantic consistency for video-language alignment."""

__version__ = "0.1.0"
