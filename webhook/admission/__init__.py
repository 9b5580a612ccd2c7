"""The admission webhook: OpenShift's API-server semantics for our CRDs, and image lookup.

Mutating (defaults.py, lookup.py), validating (validate.py), the AdmissionReview
protocol (review.py), its TLS certificates (certs.py, tls.py) and the HTTPS server
(server.py). docs/admission.md says what each webhook does and why it fails open or
closed.
"""
