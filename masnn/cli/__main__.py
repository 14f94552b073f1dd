"""``python -m masnn.cli`` runs the ``masnn`` command."""

from masnn.cli import main

raise SystemExit(main())
