"""Load and validate the config and its watchlists (contract 1: docs/config.md).

Everything is validated before anything runs: every problem is collected with
its file and place (``watchlists/korea.yaml: rules[2].query: column 17:
expected ')'``) and raised together as one ``ConfigError``. Unknown keys are
errors, YAML anchors and aliases are refused (an alias bomb of 317 bytes
expands to 43 M nodes), and files over 1 MiB are refused before reading.
"""

from monitor.config.loader import MIN_TOKEN_LENGTH, config_path, is_loopback_listen, load_config
from monitor.config.model import (
    DEFAULT_CONFIG,
    DEFAULT_PATTERNS,
    ID_PATTERN,
    MAX_CONFIG_BYTES,
    RESERVED_RULE_IDS,
    RESERVED_SOURCE_NAMES,
    SINK_TYPES,
    Config,
    FeedConfig,
    FetchConfig,
    FolderConfig,
    SinkConfig,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_PATTERNS",
    "ID_PATTERN",
    "MAX_CONFIG_BYTES",
    "MIN_TOKEN_LENGTH",
    "RESERVED_RULE_IDS",
    "RESERVED_SOURCE_NAMES",
    "SINK_TYPES",
    "Config",
    "FeedConfig",
    "FetchConfig",
    "FolderConfig",
    "SinkConfig",
    "config_path",
    "is_loopback_listen",
    "load_config",
]
