"""Security extension of OCPP 1.6: certificates and keys of the charge point."""
