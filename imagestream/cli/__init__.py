"""The `imagestream` commands: the top floor of the layers.

This package is the only one that may import both processes (`controller`
and `webhook`): `run` composes them in one process, and `explain`,
`rollout` and `start-build` reuse the controller's own planners so that what
they print is what the controller would do. Nothing imports this package.
`dev` is the one command that starts the local development system and so
needs `localdev` (a source checkout, `pip install -e '.[dev]'`).
"""
