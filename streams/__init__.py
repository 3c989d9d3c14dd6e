"""Topics, the faust app and its agents, validation, the Publisher SDK and replay."""

from driftwarden.streams.publisher import Publisher, PublisherStats

__all__ = ["Publisher", "PublisherStats"]
