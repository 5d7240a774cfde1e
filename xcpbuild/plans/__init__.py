"""Release plans shipped with xcpbuild; `local.toml` is the embedded default of the main job."""
