"""Command-line interface: one thin module per verb over the pipeline steps."""
