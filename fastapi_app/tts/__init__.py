"""Phase 1: TTS batches on RunPod."""
