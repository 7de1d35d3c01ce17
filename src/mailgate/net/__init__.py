"""The network layer below engines and inbound: policy, guarded dialer, TLS, pinned HTTP."""
