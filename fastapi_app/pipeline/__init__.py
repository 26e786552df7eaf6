"""Phase 3: the whole pipeline, ``tts -> segments -> imagegen -> video``, as a state machine on RQ."""
