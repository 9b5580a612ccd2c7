"""Pull secrets for the integrated registry, per ServiceAccount.

OpenShift's behaviour: docs/openshift-behaviours.md#behaviour-34.
"""
