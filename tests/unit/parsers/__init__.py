"""Payload parsers: real payloads in, exact PushRecords / Ignored out; anything else is BadPayload.

One test module per sender (the families of `webhook.parsers`), `test_common` for what holds for
every receiver type, and `helpers` for loading the payloads and building the expected records.

The payloads are copies of real or schema-derived deliveries
(tests/data/payloads/SOURCES.md). Where a vendor sample redacts its digest
the test shows the rejection, then substitutes a well-formed digest.
"""
