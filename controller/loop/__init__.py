"""The machinery every controller loop shares: the key queue, the workers, the outcomes.

A loop is a queue of object keys (`queue`), workers that call its reconcile
for one key at a time (`workers`), and the small vocabulary a reconcile uses
to say what should happen next (`outcomes`). The loops themselves live in
their own folders: `controller.imagestreams`, `controller.triggers`,
`controller.rollouts`, `controller.builds`.
"""
