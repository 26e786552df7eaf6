"""Phase 2: image batches on Runware."""
