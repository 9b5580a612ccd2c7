"""Pure decision logic of image-change triggers: no I/O, no clock, no client.

Modules, in dependency order:

* `resolve`: an ImageStream tag -> the pull spec a trigger writes (OpenShift's
  `ResolveLatestTaggedImage`).
* `annotations`: the `image.openshift.io/triggers` annotation, its fieldPath grammar and our
  own bookkeeping annotations.
* `ownership`: which images and annotations the trigger loop set last, from managedFields
  (what tells `kubectl rollout undo` from no change at all).
* `plan`: the planner for annotation-triggered workloads (Deployment, StatefulSet, DaemonSet,
  CronJob), the outcome vocabulary shared with DeploymentConfigs, and the write helpers.
* `deploymentconfigs`: DeploymentConfig `ImageChange` triggers.

The reconcilers decide with these functions and then act ("split decide from do"): a plan
that needs no write means no API call, which is what breaks the update -> watch event ->
reconcile loop.
"""
