"""Test instruments: a scriptable loopback CSMS (``LoopbackCsms``) and the ``cpagent demo``."""

from cpagent.testing.csms import CallErrorReply, CsmsCallError, Frame, LoopbackCsms

__all__ = ["CallErrorReply", "CsmsCallError", "Frame", "LoopbackCsms"]
