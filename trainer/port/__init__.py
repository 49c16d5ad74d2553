"""Port an MMPretrain config file (classic `_base_` format, read by MMEngine's Config) to a TOML recipe."""

from trainer.port.convert import Ported, PortOptions, port_config
from trainer.port.report import Item, Report

__all__ = ["Item", "PortOptions", "Ported", "Report", "port_config"]
