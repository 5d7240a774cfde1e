"""``python -m xcpbuild`` runs the CLI."""

from xcpbuild.cli.app import main

raise SystemExit(main())
