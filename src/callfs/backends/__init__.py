"""Where bytes live: storage nodes over gRPC, or S3, behind one interface."""
