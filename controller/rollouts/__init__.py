"""DeploymentConfig rollouts on plain Kubernetes (behaviours 23 and 24).

On OpenShift the DeploymentConfig controller and a deployer pod roll out each new
version; here, where our CRD serves `apps.openshift.io`, this package does both:

    model.py       names, annotations and labels OpenShift uses; reading DCs and RCs;
                   building the ReplicationController of a version (no I/O)
    plan.py        the decisions, as pure functions: when a new version starts and why,
                   how far each strategy step moves replicas, what to prune, the status
    reconciler.py  reads the caches, plans, and performs the plan with conditional writes

The controller steps replicas itself, from the ReplicationControllers' observed
`availableReplicas`, instead of running a deployer pod: on a cluster without
OpenShift there is no deployer image to run.

Behaviours 23 and 24 are docs/openshift-behaviours.md#behaviour-23 and
docs/openshift-behaviours.md#behaviour-24.
"""
