"""Pure data: package definitions, targets, NEVRA rules. No I/O beyond reading TOML."""
