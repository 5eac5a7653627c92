"""The OCPP 2.0.1 adapter (under construction).

This package will translate between OCPP 2.0.1 and the protocol-neutral station, as
``protocol.v16`` does for 1.6. So far it holds the device model
(:mod:`.catalogue`, :mod:`.values`, :mod:`.addressing`, :mod:`.device_model`), a pure
module with no I/O that the adapter will build on; nothing imports it from the agent yet.
"""
