"""Config loading and validation shared by every CLI verb."""

from hyft.config.languages import LanguageCode
from hyft.config.loading import ConfigError, load_config, read_config_file, validate_config

__all__ = ["ConfigError", "LanguageCode", "load_config", "read_config_file", "validate_config"]
