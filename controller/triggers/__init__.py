"""The trigger loop: workloads follow ImageStream tags (OpenShift's image trigger controller).

Modules, from what decides to what writes:

* `outcomes`: the vocabulary every trigger kind answers in (`Reason`, `TriggerOutcome`),
  printed by Events, `imagestream explain` and `imagestream rollout`.
* `podspec`: where each kind keeps its pod spec (one table), and the JSON Patch helpers
  that `test` every value a plan was decided from.
* `resolve`: an ImageStream tag -> the pull spec a trigger writes, or why there is none.
* `annotations`: the `image.openshift.io/triggers` annotation, its fieldPath grammar and
  our own bookkeeping annotations.
* `plan`: the planner for annotation-triggered workloads (Deployment, StatefulSet,
  DaemonSet, CronJob); `deploymentconfigs`: the planner for DeploymentConfig triggers.
* `ownership`: which images and annotations the trigger loop set last, from managedFields
  (what tells `kubectl rollout undo` from no change at all).
* `warnings`: which triggers entered a state in which they cannot act (one Warning per change
  of state, not per reconcile).
* `reactors`: one reactor per kind, carrying everything that differs between kinds.
* `index`: `namespace/stream` -> the objects whose active triggers follow it.
* `reconciler`: reads the caches, asks the reactor, writes, and says so in Events.

Everything above `reactors` is pure (no I/O, no clock, no client); a plan that needs no
write means no API call, which is what breaks the update -> watch event -> reconcile loop.
"""
