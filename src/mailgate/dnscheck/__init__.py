"""DNS look-ups for the sending-domain checks: a small client on a configurable resolver
(:mod:`.client`) and an SPF evaluator (:mod:`.spf`, RFC 7208 ``check_host``)."""
