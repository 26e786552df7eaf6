"""Pay once: audio and images already made from identical input are reused instead of paid for again.

Every reusable item carries a fingerprint (:mod:`~fastapi_app.reuse.fingerprint`) of everything that determines
its output. Before a batch's groups are submitted, :func:`~fastapi_app.reuse.work.prepare` holds back the items
whose fingerprint is in the reuse index (:mod:`~fastapi_app.reuse.index`), which
:func:`~fastapi_app.reuse.work.reuse_kept` then completes with copies of the stored files, and lets an item
identical to one already in flight wait for it instead of making a second provider call; when an item
made by a provider settles, :func:`~fastapi_app.reuse.work.after_update` records it in the index and completes (or
releases) the items that waited for it. All state is in Redis, so a worker restart loses nothing.

Only the fingerprints are re-exported here: the services import them, and the work imports the services.
"""

from fastapi_app.reuse.fingerprint import assign_keys

__all__ = ["assign_keys"]
