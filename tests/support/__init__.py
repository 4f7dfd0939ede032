"""Test support: real S3 (SeaweedFS), an R2-rules proxy and a SigV4 helper."""
