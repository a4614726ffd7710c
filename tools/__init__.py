"""What ``make cluster-up`` and ``make bench`` run: the local multi-process cluster and
throwaway S3 servers (moto, SeaweedFS). Not in the wheel; run from a checkout."""
