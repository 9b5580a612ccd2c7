"""BuildConfigs and Builds on plain Kubernetes (behaviour 25).

On OpenShift, the image trigger controller, the build generator and the build controller
turn a new base image into a Build, run it in a build pod, and the integrated registry
records the pushed image. Here, where our CRDs serve `build.openshift.io`:

    model.py          names, labels, annotations; reading BuildConfigs and Builds (no I/O)
    triggers.py       which ImageChange/ConfigChange trigger fires now (pure; behaviour 25)
    instantiate.py    the Build a request makes and the BuildConfig status it records (pure;
                      shared by the controller and `imagestream start-build`)
    jobs.py           the Kubernetes Job that runs a Build (default: rootless buildah), and
                      reading the pushed digest back from it (pure)
    lifecycle.py      a Build's next phase from its Job and its siblings (run policies) (pure)
    reconciler.py     the two reconcilers (BuildConfigs, Builds) doing the writes

A completed Build records its output through `imagestream.recording.StreamRecorder`, the
same path a registry push takes, so downstream triggers fire and the registry's own
notification of the same digest, when it arrives, writes nothing.

Behaviour 25 is docs/openshift-behaviours.md#behaviour-25. The OpenShift rules it relies on
are docs/openshift-behaviours.md#build-output and docs/openshift-behaviours.md#build-instantiation.
"""
