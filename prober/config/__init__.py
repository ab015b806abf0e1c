"""The config: `monitors.toml` parsed once into frozen, validated models."""

from prober.config.load import Config, ConfigError, load_config

__all__ = ["Config", "ConfigError", "load_config"]
