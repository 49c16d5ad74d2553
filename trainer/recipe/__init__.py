"""The recipe: its schema (the run's tables; each component owns its own), TOML loading with bases and
`--set` overrides, the checks that need each component (`load`), and the command-line parser the scripts
share (`cli`, light to import: usage errors and --help come before torch is imported)."""
