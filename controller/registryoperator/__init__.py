"""The Image Registry Operator's loop: `configs.imageregistry.operator.openshift.io/cluster`."""
