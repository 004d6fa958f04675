"""Sources: where articles come from."""
